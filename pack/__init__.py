"""imnet.pack: a prepared split -> WebDataset tar shards in the ``timm/imagenet-1k-wds`` layout.

The data's journey is prep -> pack -> loaders: ``layout`` (the pack's files, reading one back),
``shard`` (one tar and its DALI index), ``resize`` (re-encoding large images), ``source`` (what a
pack is made from: a prepared tree, or published ``timm/imagenet-1k-wds`` shards) and ``writer``
(``write_pack``, which composes them). It imports prep's helpers (lock, atomic writes, write
errors), never the other way round.
"""
