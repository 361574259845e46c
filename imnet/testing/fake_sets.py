"""Fake eval-set archives in their publishers' exact layouts, small, for tests and ``imnet fake --eval-sets``.

* ``imagenetv2-{matched-frequency,threshold0.7,top-images}.tar.gz``: a gzipped tar of
  ``imagenetv2-<variant>-format-val/<class index>/<sha1 of the file>.jpeg`` (folders ``0`` .. ``K-1``:
  the folder name is the class index, not a wnid), folder entries included;
* ``imagenet-a.tar`` / ``imagenet-r.tar``: ``imagenet-a/README.txt`` and ``imagenet-a/<wnid>/<name>.jpg``
  for a subset of the classes (the published 200 when the wnids are ImageNet's; else about two in
  five, never a prefix of the sorted classes, A and R different), ImageNet-A's names with spaces and
  an apostrophe (``0.000116_digital clock _ digital clock_0.865662.jpg``), ImageNet-R's ``<style>_<n>.jpg``;
* ``ImageNet-Sketch.zip``: deflated ``sketch/<wnid>/sketch_<n>.JPEG`` for every class, folder entries included.

Images are drawn in the same class looks as :func:`imnet.testing.fake.fake_ilsvrc` with the same
``seed`` and class count (colour, stripe angle and frequency per class), so a model trained on the fake
ILSVRC2012 recognises them. Quirks are planted by content: a CMYK JPEG in ImageNetV2 MatchedFrequency
and ImageNet-R, a PNG under a ``.jpg``/``.JPEG`` name in ImageNet-A and -Sketch, a grayscale JPEG in
-Sketch. Same arguments, same bytes.
"""
from __future__ import annotations

import gzip
import hashlib
import io
import tarfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from imnet.prep.sets import EVAL_SET_NAMES, EVAL_SETS, published_facts
from imnet.testing.fake import ARCHIVE_MTIME, _class_looks, encode, md5_of, render_image

R_STYLES = ("art", "cartoon", "deviantart", "embroidery", "graffiti", "graphic", "misc", "origami", "painting",
            "sculpture", "sketch", "sticker", "tattoo", "toy", "videogame")
README_A = b"ImageNet-A: natural adversarial examples (a fake for tests).\n"
README_R = b"ImageNet-R: renditions of 200 ImageNet classes (a fake for tests).\n"
ZIP_TIME = (2019, 5, 1, 0, 0, 0)


@dataclass
class FakeEvalSets:
    """What :func:`fake_eval_sets` wrote: ``archives`` by set name; ``members`` per set: (member path
    in the archive, class index of the image) of every image, the writer's own truth; ``subsets``:
    the sorted class indices ImageNet-A/-R hold; ``quirks``: tree paths (``<set>/<wnid>/<name>``) of
    the planted files and their kind."""

    root: Path
    archives: dict[str, Path] = field(default_factory=dict)
    members: dict[str, list[tuple[str, int]]] = field(default_factory=dict)
    subsets: dict[str, list[int]] = field(default_factory=dict)
    quirks: dict[str, str] = field(default_factory=dict)


def class_subset(name: str, wnids: list[str]) -> list[int]:
    """The class indices a fake ImageNet-A/-R holds: the published 200 when ``wnids`` (sorted) are
    ImageNet's, else a fixed spread of about two in five classes (A and R differ; neither a prefix)."""
    published = published_facts(name).get("wnids") or []
    if published and set(published) <= set(wnids):
        positions = {w: i for i, w in enumerate(wnids)}
        return sorted(positions[w] for w in published)
    k = len(wnids)
    if name == "imagenet-a":
        picked = [c for c in range(k) if (c * 7 + 3) % 5 < 2]
    else:
        picked = [c for c in range(k) if (c * 3 + 1) % 4 < 2]
    return picked if len(picked) >= min(2, k) else list(range(min(2, k)))


def _tarinfo(name: str, size: int = 0, directory: bool = False) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size, info.mtime = size, ARCHIVE_MTIME
    info.mode = 0o755 if directory else 0o644
    info.type = tarfile.DIRTYPE if directory else tarfile.REGTYPE
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def _write_tar(tar: tarfile.TarFile, entries: list[tuple[str, bytes | None]]) -> None:
    for name, data in entries:
        if data is None:
            tar.addfile(_tarinfo(name, directory=True))
        else:
            tar.addfile(_tarinfo(name, len(data)), io.BytesIO(data))


def _zip_folder(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, ZIP_TIME)
    info.external_attr = (0o40755 << 16) | 0x10  # a folder, as zip tools write it (MS-DOS directory bit)
    info.CRC = info.compress_size = info.file_size = 0  # ZipFile.mkdir(ZipInfo) leaves them unset (3.11)
    return info


def _image(look, size, rng, noise, kind: str) -> bytes:
    return encode(render_image(look, size, rng, noise), kind)


def fake_eval_sets(out: Path, wnids: list[str], seed: int = 0, sets: tuple[str, ...] = EVAL_SET_NAMES,
                   per_class: int = 2, image_size: tuple[int, int] = (48, 40), quirks: bool = True,
                   noise: float = 6.0, checksums: Path | None = None) -> FakeEvalSets:
    """Write the archives of ``sets`` (canonical names) into ``out`` for the sorted class list
    ``wnids`` (those of the fake ILSVRC2012 they go with), ``per_class`` images per class held, of
    ``image_size`` = (width, height). With ``checksums`` (an md5sum-format file, e.g. the fake
    ILSVRC2012's ``checksums.md5``) their MD5s are added to it. Returns a :class:`FakeEvalSets`."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if list(wnids) != sorted(wnids) or not wnids:
        raise ValueError("fake_eval_sets needs the sorted wnids of the tree's classes")
    looks = _class_looks(len(wnids), seed)
    fake = FakeEvalSets(root=out)
    for number, name in enumerate(sets):
        spec = EVAL_SETS[name]
        rng_base = [seed, 50 + number]
        path = out / spec.archive
        truth: list[tuple[str, int]] = []
        planted = {"imagenetv2-matched-frequency": "cmyk", "imagenet-r": "cmyk", "imagenet-a": "png",
                   "imagenet-sketch": "png"}.get(name) if quirks else None
        root = spec.roots[0]
        if spec.folders == "index":  # ImageNetV2: <root>/<class index>/<sha1>.jpeg in a .tar.gz
            entries: list[tuple[str, bytes | None]] = [(root, None)]
            for c in range(len(wnids)):
                entries.append((f"{root}/{c}", None))
                for i in range(per_class):
                    kind = planted if (c, i) == (len(wnids) - 1, 0) and planted else "rgb"
                    data = _image(looks[c], image_size, np.random.default_rng([*rng_base, c, i]), noise, kind)
                    member = f"{root}/{c}/{hashlib.sha1(data).hexdigest()}.jpeg"
                    entries.append((member, data))
                    truth.append((member, c))
                    if kind != "rgb":
                        fake.quirks[f"{name}/{wnids[c]}/{member.rsplit('/', 1)[1]}"] = kind
            with open(path, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=ARCHIVE_MTIME) as gz:
                with tarfile.open(fileobj=gz, mode="w", format=tarfile.GNU_FORMAT) as tar:
                    _write_tar(tar, entries)
        elif spec.packing == "tar":  # ImageNet-A / -R: <root>/README.txt, <root>/<wnid>/<name>.jpg
            subset = class_subset(name, wnids)
            fake.subsets[name] = subset
            entries = [(root, None), (f"{root}/README.txt", README_A if name == "imagenet-a" else README_R)]
            for position, c in enumerate(subset):
                entries.append((f"{root}/{wnids[c]}", None))
                for i in range(per_class):
                    kind = planted if (position, i) == (1, 0) and planted else "rgb"
                    data = _image(looks[c], image_size, np.random.default_rng([*rng_base, c, i]), noise, kind)
                    if name == "imagenet-a":
                        wrong = (c + 1 + i) % len(wnids)
                        label = "jack-o'-lantern" if i == 1 else f"fake class {c}"
                        file = f"{0.001 + 0.01 * i:.6f}_fake class {wrong} _ {label}_{0.5 + 0.03 * c:.6f}.jpg"
                    else:
                        file = f"{R_STYLES[(c + i) % len(R_STYLES)]}_{i}.jpg"
                    member = f"{root}/{wnids[c]}/{file}"
                    entries.append((member, data))
                    truth.append((member, c))
                    if kind != "rgb":
                        fake.quirks[f"{name}/{wnids[c]}/{file}"] = kind
            with tarfile.open(path, "w", format=tarfile.GNU_FORMAT) as tar:
                _write_tar(tar, entries)
        else:  # ImageNet-Sketch: sketch/<wnid>/sketch_<n>.JPEG in a deflated zip
            with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
                archive.mkdir(_zip_folder(f"{root}/"))
                for c, wnid in enumerate(wnids):
                    archive.mkdir(_zip_folder(f"{root}/{wnid}/"))
                    for i in range(per_class):
                        kind = "rgb"
                        if quirks and (c, i) == (0, 0):
                            kind = "png"
                        elif quirks and (c, i) == (0, 1):
                            kind = "grayscale"
                        data = _image(looks[c], image_size, np.random.default_rng([*rng_base, c, i]), noise, kind)
                        member = f"{root}/{wnid}/sketch_{i}.JPEG"
                        info = zipfile.ZipInfo(member, ZIP_TIME)
                        info.compress_type = zipfile.ZIP_DEFLATED
                        info.external_attr = 0o100644 << 16
                        archive.writestr(info, data)
                        truth.append((member, c))
                        if kind != "rgb":
                            fake.quirks[f"{name}/{wnid}/sketch_{i}.JPEG"] = kind
        fake.archives[name] = path
        fake.members[name] = truth
    if checksums is not None:
        lines = [line for line in (checksums.read_text().splitlines() if checksums.is_file() else [])
                 if line.split("  ", 1)[-1] not in {p.name for p in fake.archives.values()}]
        lines += [f"{md5_of(p)}  {p.name}" for p in fake.archives.values()]
        checksums.write_text("".join(f"{line}\n" for line in lines))
    return fake



_CACHE: dict[tuple, tuple[Path, FakeEvalSets]] = {}


def prepared_tree_with_sets(tmp_dir: Path, sets: tuple[str, ...] = EVAL_SET_NAMES, per_class: int = 2,
                            **fake_kwargs) -> tuple[Path, FakeEvalSets]:
    """A prepared tree holding train, val and the eval sets ``sets``, made from fake archives
    (:func:`imnet.testing.fake.fake_ilsvrc` with ``fake_kwargs``, then :func:`fake_eval_sets` in the
    same class looks, ``per_class`` images per class): returns (``tmp_dir/"data"``, what
    :func:`fake_eval_sets` wrote, with its archives under ``tmp_dir/"src"`` beside the ILSVRC2012
    ones and ``checksums.md5``). Repeated calls with the same arguments copy a cached tree."""
    import atexit
    import shutil
    import tempfile

    from imnet.prep import prepare
    from imnet.testing.fake import fake_ilsvrc

    key = (tuple(sets), per_class, tuple(sorted((k, tuple(v) if isinstance(v, list) else v)
                                                for k, v in fake_kwargs.items())))
    cached = _CACHE.get(key)
    if cached is None or not (cached[0] / "data" / "meta" / "prep.json").is_file():
        base = Path(tempfile.mkdtemp(prefix="imnet-sets-fixture-"))
        atexit.register(shutil.rmtree, base, True)
        fake = fake_ilsvrc(base / "src", **fake_kwargs)
        written = fake_eval_sets(base / "src", fake.wnids, seed=fake_kwargs.get("seed", 0), sets=tuple(sets),
                                 per_class=per_class, image_size=fake_kwargs.get("image_size", (80, 64)),
                                 checksums=fake.checksums)
        prepare(base / "src", base / "data", checksums=fake.checksums, workers=1, progress=False)
        cached = _CACHE[key] = (base, written)
    base, written = cached
    tmp_dir = Path(tmp_dir)
    shutil.copytree(base / "src", tmp_dir / "src", dirs_exist_ok=True)
    shutil.copytree(base / "data", tmp_dir / "data", dirs_exist_ok=True)
    moved = FakeEvalSets(root=tmp_dir / "src",
                         archives={n: tmp_dir / "src" / p.name for n, p in written.archives.items()},
                         members={n: list(m) for n, m in written.members.items()},
                         subsets={n: list(v) for n, v in written.subsets.items()}, quirks=dict(written.quirks))
    return tmp_dir / "data", moved
