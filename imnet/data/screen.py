"""Images the tree records as undecodable, screened before any loader reads them: one place, used by
both builders whatever the backend.

``imnet prep`` decodes every image with PIL (the torch loader's decoder) and lists those it refuses
in the split's record (``meta/prep.json``: ``decode_checked``, ``undecodable``). DALI's libjpeg
decodes many such files with warnings only, so DALI alone would train on them or score them. Read
with the file list, the record makes every backend at least as strict as the torch loader:

* an undecodable image not acknowledged fails the build, naming the file (eval: unless
  ``skip_bad``, which skips it: counted in ``skipped``, named, the result partial);
* an acknowledged one (``imnet verify --acknowledge-bad``) is skipped: left out of the train list
  with a note, or skipped by eval as with ``skip_bad``.

A tree with no such record (made by another tool, or by an older imnet prep) is read as it is: the
torch loader still refuses undecodable files itself; a DALI loader prints a note once that it cannot
(``imnet prep --redo`` of the split records a decode check, ``--loader torch`` needs none).
"""
from __future__ import annotations

import sys
from imnet.data.filelist import SplitList
from imnet.errors import ImnetError

_NOTED: set[tuple[str, str]] = set()


def recorded_bad(split: SplitList) -> tuple[bool, dict[int, tuple[str, bool]]]:
    """(whether the tree records a decode check of this split, {list position: (reason,
    acknowledged)} of the images it records as undecodable). One pass over the list, and only when
    there are any."""
    from imnet.prep.verify import recorded_undecodable

    shards = getattr(split, "shards", None)
    if shards is not None:  # a pack: what its source recorded (imnet pack keeps such val images, acknowledged)
        bad = {int(item["position"]): (item.get("reason", "does not decode"), True)
               for item in shards.record.get("undecodable", []) if int(item["position"]) < len(split)}
        return bool(shards.record.get("decode_checked")), bad
    checked, bad = recorded_undecodable(split.root.parent, split.root.name)
    if not bad:
        return checked, {}
    wanted = {item["file"].split("/", 1)[1]: (item.get("reason", "does not decode"), bool(item.get("acknowledged")))
              for item in bad}
    return checked, {position: wanted[file] for position, file in enumerate(split.files) if file in wanted}


def _note_unchecked(split: SplitList, backend: str) -> None:
    key = (str(split.root), backend)
    if backend == "dali" and key not in _NOTED and getattr(split, "shards", None) is not None:
        _NOTED.add(key)
        print(f"imnet: note: the pack {split.root} records no decode check of its {split.list_path.stem} split's "
              f"source (published shards, or a tree without an imnet prep record): DALI decodes corrupt JPEG data "
              f"with warnings only; `--loader torch` refuses such files", file=sys.stderr)
    elif backend == "dali" and key not in _NOTED:
        _NOTED.add(key)
        print(f"imnet: note: {split.root.parent / 'meta' / 'prep.json'} records no decode check of the "
              f"{split.root.name} split (a tree from another tool or an older imnet prep): DALI decodes corrupt "
              f"JPEG data with warnings only, so such an image would be used; `imnet prep --redo --only "
              f"{split.root.name}` records one, `--loader torch` refuses such files itself", file=sys.stderr)


def _refusal(split: SplitList, position: int, reason: str, count: int, what: str) -> ImnetError:
    data = split.root.parent
    return ImnetError(
        f"{split.path(position)}: does not decode ({reason}); imnet prep recorded it as undecodable in "
        f"{data / 'meta' / 'prep.json'} ({count} such image(s) in {split.list_path.name}); {what}, or repair it "
        f"or accept it with `imnet verify --data {data} --acknowledge-bad`")


def screen_train(split: SplitList, backend: str) -> SplitList:
    """The train list without the acknowledged undecodable images (a note says how many); raises
    ImnetError naming the first unacknowledged one."""
    checked, bad = recorded_bad(split)
    if not checked:
        _note_unchecked(split, backend)
    if not bad:
        return split
    refused = [(p, reason) for p, (reason, acknowledged) in sorted(bad.items()) if not acknowledged]
    if refused:
        raise _refusal(split, refused[0][0], refused[0][1], len(refused), "training would use it")
    print(f"imnet: skipping {len(bad)} acknowledged undecodable image(s) of {split.list_path}", file=sys.stderr)
    keep = [i for i in range(len(split)) if i not in bad]
    return SplitList(root=split.root, list_path=split.list_path, files=[split.files[i] for i in keep],
                     labels=[split.labels[i] for i in keep])


def screen_eval(split: SplitList, shard: range, skip_bad: bool, backend: str) -> dict[int, str]:
    """{position: reason} of the recorded undecodable images in ``shard`` that eval must skip;
    raises ImnetError naming the first unacknowledged one unless ``skip_bad``."""
    checked, bad = recorded_bad(split)
    if not checked:
        _note_unchecked(split, backend)
    bad = {p: v for p, v in bad.items() if p in shard}
    refused = [(p, reason) for p, (reason, acknowledged) in sorted(bad.items()) if not acknowledged]
    if refused and not skip_bad:
        raise _refusal(split, refused[0][0], refused[0][1], len(refused), "--skip-bad skips such images")
    return {p: reason for p, (reason, _) in bad.items()}


class SkipRecorded:
    """An eval loader that leaves out the positions in ``skip`` (recorded undecodable images) from
    every batch of ``inner`` and reports them in ``skipped``, whatever the backend decoded; any other
    image the backend skipped is an error unless ``skip_bad``. Everything else is ``inner``'s."""

    def __init__(self, inner, skip: dict[int, str], skip_bad: bool):
        self._inner, self._skip, self._skip_bad = inner, skip, skip_bad
        self.num_images = inner.num_images - len(skip)
        self.skipped: list[tuple[int, str, str]] = []

    def __getattr__(self, name):
        return getattr(self._inner, name)

    def __len__(self) -> int:
        return len(self._inner)

    def _take_inner_skips(self) -> None:
        seen = {position for position, _, _ in self.skipped}
        for position, file, reason in getattr(self._inner, "skipped", []):
            if position in seen:
                continue
            if not self._skip_bad:
                raise ImnetError(f"{self._inner.split.path(position)}: {reason} (--skip-bad counts such images "
                                 f"as skipped)")
            self.skipped.append((position, file, reason))
            seen.add(position)

    def __iter__(self):
        from imnet.data.base import EvalBatch

        self.skipped = [(p, self._inner.files[p], f"recorded as undecodable by imnet prep: {reason}")
                        for p, reason in sorted(self._skip.items())]
        for position, _, reason in self.skipped:
            print(f"imnet: skipping {self._inner.split.path(position)}: {reason}", file=sys.stderr)
        for batch in self._inner:
            self._take_inner_skips()
            keep = [i for i, p in enumerate(batch.indices.tolist()) if p not in self._skip]
            if len(keep) == len(batch.indices):
                yield batch
            elif keep:
                yield EvalBatch(batch.images[keep], batch.labels[keep], batch.indices[keep])
        self._take_inner_skips()

    def close(self) -> None:
        self._inner.close()

    def __enter__(self) -> "SkipRecorded":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()
