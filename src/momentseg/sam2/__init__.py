"""All SAM2 glue, below ``model`` and ``propagation``: configs, preprocessing and constructors (:mod:`.config`,
no transformers import), transformers' ``Sam2VideoModel`` prompted by the ``[SEG]`` embedding (:mod:`.video`)
and the bounded-memory propagation session BAP runs (:mod:`.session`)."""
