"""Fake ILSVRC2012 archives in exactly the official formats, small enough for tests and the demo.

* ``ILSVRC2012_img_train.tar``: an outer tar of inner ``<wnid>.tar`` files (in shuffled order), each
  holding ``<wnid>_<n>.JPEG`` images;
* ``ILSVRC2012_img_val.tar``: flat ``ILSVRC2012_val_%08d.JPEG``;
* ``ILSVRC2012_devkit_t12.tar.gz``: ``ILSVRC2012_devkit_t12/data/meta.mat`` (the real ``synsets``
  fields; leaves plus non-leaf rows; ILSVRC2012_ID order differs from sorted-wnid order) and
  ``data/ILSVRC2012_validation_ground_truth.txt``;
* ``checksums.md5`` (md5sum format) and ``real.json`` (ReaL-style label lists in val order).

Images are learnable: each class has its own colour and stripe orientation/frequency, each image its
own phase, brightness and noise. The real set's quirks are planted under their real names where the
name fits: a CMYK JPEG (``n01739381_1309.JPEG``), a PNG named ``.JPEG`` (``n02105855_2933.JPEG``), a
grayscale JPEG, and a CMYK val image (``ILSVRC2012_val_00019877.JPEG`` when there are that many).
``corrupt_val`` plants val JPEGs with a valid header and a corrupt body (:func:`corrupt_jpeg`): PIL
refuses them, DALI's libjpeg only warns.
"""
from __future__ import annotations

import colorsys
import gzip
import hashlib
import io
import json
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

TRAIN_TAR = "ILSVRC2012_img_train.tar"
VAL_TAR = "ILSVRC2012_img_val.tar"
DEVKIT = "ILSVRC2012_devkit_t12.tar.gz"
# Real names of the quirky files, used when the fixture's classes/val count allow them.
CMYK_TRAIN = ("n01739381", "n01739381_1309.JPEG")
PNG_TRAIN = ("n02105855", "n02105855_2933.JPEG")
CMYK_VAL_NUMBER = 19877
ARCHIVE_MTIME = 1335398400  # 2012-04-26, about when the archives were published
MAT_FIELDS = ("ILSVRC2012_ID", "WNID", "words", "gloss", "num_children", "children", "wordnet_height",
              "num_train_images")


@dataclass
class FakeILSVRC:
    """What :func:`fake_ilsvrc` wrote. ``wnids`` are sorted (position = class index); ``val_labels``
    is the class index of val image 1..N; ``train_files`` lists (wnid, file name); ``quirks`` maps the
    planted files' tree paths (``train/<wnid>/<name>``, ``val/<wnid>/<name>``) to their kind."""

    root: Path
    train_tar: Path
    val_tar: Path
    devkit: Path
    checksums: Path
    real_json: Path
    wnids: list[str]
    ilsvrc_ids: dict[str, int]
    val_labels: list[int]
    train_files: list[tuple[str, str]]
    quirks: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class _ClassLook:
    """A class's visual signature: colour, stripe angle and frequency."""

    rgb: np.ndarray
    angle: float
    frequency: float


def _class_looks(classes: int, seed: int) -> list[_ClassLook]:
    rng = np.random.default_rng([seed, 1])
    looks = []
    for c in range(classes):
        hue = (c / classes + rng.uniform(0, 0.3 / classes)) % 1.0
        rgb = np.array(colorsys.hsv_to_rgb(hue, 0.75, 0.9)) * 255
        looks.append(_ClassLook(rgb, angle=np.pi * ((c * 0.618) % 1.0), frequency=2.0 + (c * 3) % 7))
    return looks


def render_image(look: _ClassLook, size: tuple[int, int], rng: np.random.Generator, noise: float) -> np.ndarray:
    """An RGB uint8 image (H, W, 3) of ``size`` = (width, height) drawn in a class's look."""
    width, height = size
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    u = (xx * np.cos(look.angle) + yy * np.sin(look.angle)) / max(width, height)
    stripes = 0.5 + 0.5 * np.sin(2 * np.pi * look.frequency * u + rng.uniform(0, 2 * np.pi))
    image = look.rgb[None, None, :] * (0.3 + 0.7 * stripes[..., None]) * rng.uniform(0.8, 1.1)
    if noise:
        image = image + rng.normal(0, noise, image.shape)
    return np.clip(image, 0, 255).astype(np.uint8)


def encode(pixels: np.ndarray, kind: str = "rgb", quality: int = 90) -> bytes:
    """Encode pixels as a JPEG (``rgb``, ``cmyk`` or ``grayscale``) or as a ``png``."""
    image = Image.fromarray(pixels, "RGB")
    out = io.BytesIO()
    if kind == "png":
        image.save(out, format="PNG")
    elif kind == "cmyk":
        image.convert("CMYK").save(out, format="JPEG", quality=quality)
    elif kind == "grayscale":
        image.convert("L").save(out, format="JPEG", quality=quality)
    else:
        image.save(out, format="JPEG", quality=quality)
    return out.getvalue()


def corrupt_jpeg(data: bytes) -> bytes:
    """``data`` (a JPEG) with a second start-of-image marker written over two bytes in the middle of
    its entropy-coded data: same size, valid header; PIL's decode fails ("broken data stream"),
    libjpeg as DALI runs it only warns and decodes garbage."""
    sos = data.find(b"\xff\xda")
    if not data.startswith(b"\xff\xd8") or sos < 0:
        raise ValueError("not a JPEG with a scan")
    body = sos + 2 + ((data[sos + 2] << 8) | data[sos + 3])
    middle = (body + len(data)) // 2
    return data[:middle] + b"\xff\xd8" + data[middle + 2:]


def _tarinfo(name: str, size: int, mode: int = 0o644, kind: bytes = tarfile.REGTYPE) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime, info.type = size, mode, ARCHIVE_MTIME, kind
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    """Add a regular file ``name`` with content ``data`` to an open tar (fixed metadata)."""
    tar.addfile(_tarinfo(name, len(data)), io.BytesIO(data))


def add_to_class_tar(train_tar: Path, wnid: str, name: str, data: bytes) -> None:
    """Rewrite ``train_tar`` with a file ``name`` (content ``data``) appended to the inner
    ``<wnid>.tar`` (for tests that plant a bad member; checksums are the caller's to rewrite)."""
    with tarfile.open(train_tar) as tar:
        members = [(member, tar.extractfile(member).read()) for member in tar]
    with tarfile.open(train_tar, "w", format=tarfile.USTAR_FORMAT) as tar:
        for member, content in members:
            if member.name == f"{wnid}.tar":
                buffer = io.BytesIO(content)
                with tarfile.open(fileobj=buffer, mode="a") as inner:
                    add_bytes(inner, name, data)
                content = buffer.getvalue()
                member.size = len(content)
            tar.addfile(member, io.BytesIO(content))


def torchvision_imagenet_root(fake: "FakeILSVRC", root: Path, monkeypatch) -> Path:
    """Copy the fake archives into ``root`` and point torchvision's ``ImageNet`` at them (its
    ``ARCHIVE_META`` names and MD5s, patched with pytest's ``monkeypatch``), so that
    ``torchvision.datasets.ImageNet(root, split=...)`` parses them: the independent reader."""
    import shutil

    import torchvision.datasets.imagenet as tv_imagenet

    root.mkdir(parents=True, exist_ok=True)
    md5 = dict(reversed(line.split("  ")) for line in fake.checksums.read_text().splitlines())
    for key, path in (("train", fake.train_tar), ("val", fake.val_tar), ("devkit", fake.devkit)):
        shutil.copy(path, root)
        monkeypatch.setitem(tv_imagenet.ARCHIVE_META, key, (path.name, md5[path.name]))
    return root


def _make_wnids(classes: int, quirks: bool, rng: np.random.Generator) -> tuple[list[str], list[str]]:
    """(leaf wnids, sorted; non-leaf wnids) with the quirk classes' real wnids included."""
    wanted = [CMYK_TRAIN[0], PNG_TRAIN[0]][: classes] if quirks else []
    taken = set(wanted)
    extra = max(2, classes // 3)
    others = []
    while len(others) < classes - len(wanted) + extra:
        wnid = f"n{rng.integers(1_000_000, 15_000_000):08d}"
        if wnid not in taken:
            taken.add(wnid)
            others.append(wnid)
    leaves = sorted(wanted + others[: classes - len(wanted)])
    return leaves, others[classes - len(wanted):]


MAT_HEADER_TEXT = b"MATLAB 5.0 MAT-file, Platform: posix, Created by imnet.testing.fake".ljust(116)


def meta_mat_bytes(leaves: list[str], ids: dict[str, int], inner: list[str], counts: dict[str, int]) -> bytes:
    """``meta.mat`` bytes for leaf classes ``leaves`` (ILSVRC2012_IDs ``ids``) and non-leaf wnids
    ``inner``: the ``synsets`` struct array, leaves (IDs 1..K) then non-leaf rows."""
    import scipy.io

    rows = len(leaves) + len(inner)
    synsets = np.zeros((rows, 1), dtype=[(f, "O") for f in MAT_FIELDS])
    by_id = sorted(leaves, key=lambda w: ids[w])
    for row, wnid in enumerate(by_id):
        synsets[row, 0] = (np.uint16(ids[wnid]), wnid, f"class {wnid}, fake {ids[wnid]}",
                           f"a fake class for tests ({wnid})", np.uint8(0), np.zeros((0,), np.uint16),
                           np.uint8(0), np.uint16(counts[wnid]))
    # Non-leaf rows split the leaves among them, as the WordNet tree above the 1000 classes does.
    groups = np.array_split(np.array([ids[w] for w in by_id], dtype=np.uint16), len(inner))
    for offset, (wnid, children) in enumerate(zip(inner, groups)):
        row = len(leaves) + offset
        synsets[row, 0] = (np.uint16(row + 1), wnid, f"group {wnid}", "a fake super-class",
                           np.uint8(len(children)), children, np.uint8(1), np.uint16(0))
    out = io.BytesIO()
    scipy.io.savemat(out, {"synsets": synsets}, format="5")
    # The 116-byte text at the top of a MAT v5 file carries savemat's "Created on: <time>": a fixed
    # text instead, so the same input gives the same bytes (and the same devkit MD5) in any second.
    return MAT_HEADER_TEXT + out.getvalue()[len(MAT_HEADER_TEXT):]


def write_devkit(path: Path, meta_mat: bytes, ground_truth_ids: list[int]) -> None:
    """Write the devkit ``.tar.gz`` (fixed mtimes, so the same input gives the same bytes)."""
    truth = "".join(f"{i}\n" for i in ground_truth_ids).encode()
    with open(path, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=ARCHIVE_MTIME) as gz:
        with tarfile.open(fileobj=gz, mode="w", format=tarfile.USTAR_FORMAT) as tar:
            for folder in ("ILSVRC2012_devkit_t12", "ILSVRC2012_devkit_t12/data"):
                tar.addfile(_tarinfo(folder, 0, 0o755, tarfile.DIRTYPE))
            add_bytes(tar, "ILSVRC2012_devkit_t12/readme.txt", b"Fake ILSVRC2012 development kit for tests.\n")
            add_bytes(tar, "ILSVRC2012_devkit_t12/data/meta.mat", meta_mat)
            add_bytes(tar, "ILSVRC2012_devkit_t12/data/ILSVRC2012_validation_ground_truth.txt", truth)


def md5_of(path: Path) -> str:
    """MD5 hex digest of a file."""
    digest = hashlib.md5()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_checksums(path: Path, files: list[Path]) -> None:
    """Write an md5sum-format list of ``files`` (by base name) to ``path``."""
    path.write_text("".join(f"{md5_of(f)}  {f.name}\n" for f in files))


def fake_ilsvrc(out: Path, classes: int = 10, train_per_class: int = 10, val: int = 50, seed: int = 0,
                image_size: tuple[int, int] = (80, 64), quirks: bool = True, noise: float = 6.0,
                quality: int = 90, corrupt_val: tuple[int, ...] = ()) -> FakeILSVRC:
    """Write fake ILSVRC2012 archives, ``checksums.md5`` and ``real.json`` into ``out``.

    ``classes`` leaf classes with ``train_per_class`` train images each and ``val`` val images (every
    class gets at least one when ``val >= classes``), all of ``image_size`` = (width, height). With
    ``quirks`` the real set's quirks are planted. ``noise`` (pixel std) and ``quality`` set how well
    the JPEGs compress (benchmarks use large noisy images). ``corrupt_val``: val numbers (1-based)
    whose JPEG gets a corrupt body (:func:`corrupt_jpeg`; ``quirks`` maps them to "corrupt").
    Same arguments, same bytes.
    Returns a :class:`FakeILSVRC` describing what was written.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if classes < 1 or train_per_class < 1 or val < 1:
        raise ValueError("fake_ilsvrc needs at least one class, one train image per class and one val image")
    rng = np.random.default_rng(seed)
    wnids, inner = _make_wnids(classes, quirks, rng)
    order = list(rng.permutation(classes))
    if classes > 1 and order == sorted(order):
        order = order[::-1]  # ILSVRC2012_ID order must differ from sorted-wnid order
    ids = {wnids[c]: position + 1 for position, c in enumerate(order)}
    looks = _class_looks(classes, seed)
    planted: dict[str, str] = {}
    if quirks:
        for wnid, name in (CMYK_TRAIN, PNG_TRAIN):
            if wnid in wnids:
                planted[f"train/{wnid}/{name}"] = "png" if name == PNG_TRAIN[1] else "cmyk"
        plain = [w for w in wnids if w not in (CMYK_TRAIN[0], PNG_TRAIN[0])]
        if plain:
            planted[f"train/{plain[0]}/{plain[0]}_{7 + rng.integers(1, 999)}.JPEG"] = "grayscale"

    train_files: list[tuple[str, str]] = []
    fake = FakeILSVRC(root=out, train_tar=out / TRAIN_TAR, val_tar=out / VAL_TAR, devkit=out / DEVKIT,
                      checksums=out / "checksums.md5", real_json=out / "real.json", wnids=wnids,
                      ilsvrc_ids=ids, val_labels=[], train_files=train_files, quirks=planted)
    with tarfile.open(fake.train_tar, "w", format=tarfile.USTAR_FORMAT) as outer:
        for c in rng.permutation(classes):
            wnid = wnids[c]
            forced = [rel.rsplit("/", 1)[1] for rel in planted if rel.startswith(f"train/{wnid}/")]
            numbers = rng.choice(np.arange(1, 40 * train_per_class + 100), train_per_class, replace=False)
            names = forced + [f"{wnid}_{n}.JPEG" for n in numbers if f"{wnid}_{n}.JPEG" not in forced]
            names = names[:train_per_class]
            buffer = io.BytesIO()
            with tarfile.open(fileobj=buffer, mode="w", format=tarfile.USTAR_FORMAT) as class_tar:
                for i, name in enumerate(rng.permutation(names)):
                    pixels = render_image(looks[c], image_size, np.random.default_rng([seed, 2, c, i]), noise)
                    kind = planted.get(f"train/{wnid}/{name}", "rgb")
                    add_bytes(class_tar, str(name), encode(pixels, kind, quality))
                    train_files.append((wnid, str(name)))
            add_bytes(outer, f"{wnid}.tar", buffer.getvalue())
    train_files.sort()

    labels = [int(x) for x in rng.permutation(np.arange(val) % classes)]
    fake.val_labels = labels
    cmyk_val = CMYK_VAL_NUMBER if val >= CMYK_VAL_NUMBER else min(3, val)
    if quirks:
        planted[f"val/{wnids[labels[cmyk_val - 1]]}/ILSVRC2012_val_{cmyk_val:08d}.JPEG"] = "cmyk"
    with tarfile.open(fake.val_tar, "w", format=tarfile.USTAR_FORMAT) as val_tar:
        for number, label in enumerate(labels, 1):
            pixels = render_image(looks[label], image_size, np.random.default_rng([seed, 3, number]), noise)
            name = f"ILSVRC2012_val_{number:08d}.JPEG"
            kind = "cmyk" if quirks and number == cmyk_val else "rgb"
            data = encode(pixels, kind, quality)
            if number in corrupt_val:
                data = corrupt_jpeg(data)
                planted[f"val/{wnids[label]}/{name}"] = "corrupt"
            add_bytes(val_tar, name, data)

    counts = {w: train_per_class for w in wnids}
    write_devkit(fake.devkit, meta_mat_bytes(wnids, ids, inner, counts), [ids[wnids[label]] for label in labels])
    write_checksums(fake.checksums, [fake.train_tar, fake.val_tar, fake.devkit])
    # ReaL-style labels: mostly the original label, some with a second plausible one, some empty.
    real = []
    for number, label in enumerate(labels, 1):
        if number % 11 == 0:
            real.append([])
        elif number % 7 == 0 and classes > 1:
            real.append(sorted({label, (label + 1) % classes}))
        else:
            real.append([label])
    fake.real_json.write_text(json.dumps(real))
    return fake
