"""Shards in the layout of the published ``timm/imagenet-1k-wds`` (for ``imnet pack --from`` tests),
written with the ``webdataset`` package's own ``TarWriter`` from a prepared tree.

``imagenet1k-train-NNNN.tar`` and ``imagenet1k-validation-NNNN.tar`` hold ``<key>.jpg`` (the
image's bytes), ``<key>.cls`` (class index) and ``<key>.json`` (``filename``, ``label``,
``class_name``), keyed by the file's stem; both splits are shuffled across shards (val too, as
TFDS-converted shards are not in val-number order); ``_info.json`` lists per split its
``num_samples``, ``filenames`` and ``shard_lengths``.
"""
from __future__ import annotations

import json
import random
from pathlib import Path


def fake_timm_wds(tree: Path, out: Path, shards: dict[str, int] | None = None, seed: int = 0) -> Path:
    """Write ``out`` from the prepared ``tree`` (``shards``: per imnet split, how many); returns ``out``."""
    import webdataset as wds

    from imnet.prep.manifests import read_classes, read_file_list

    tree, out = Path(tree), Path(out)
    out.mkdir(parents=True, exist_ok=True)
    shards = shards or {"train": 4, "val": 2}
    words = {c.class_index: c.words for c in read_classes(tree)}
    info = {"name": "imagenet-1k", "splits": {}}
    for split, name in (("train", "train"), ("val", "validation")):
        entries = read_file_list(tree / "meta" / f"{split}.txt")
        random.Random(f"{seed}/{split}").shuffle(entries)
        count = shards[split]
        filenames, lengths = [], []
        for i in range(count):
            part = entries[i * len(entries) // count:(i + 1) * len(entries) // count]
            filename = f"imagenet1k-{name}-{i:04d}.tar"
            with wds.TarWriter(str(out / filename)) as sink:
                for relative, label in part:
                    file = relative.split("/", 1)[1]
                    sink.write({"__key__": file.split(".")[0], "jpg": (tree / split / relative).read_bytes(),
                                "cls": label, "json": {"filename": file, "label": label, "class_name": words[label]}})
            filenames.append(filename)
            lengths.append(len(part))
        info["splits"][name] = {"name": name, "num_samples": len(entries), "filenames": filenames,
                                "shard_lengths": lengths}
    (out / "_info.json").write_text(json.dumps(info, indent=1), encoding="utf-8")
    return out
