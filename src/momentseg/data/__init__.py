"""Dataset formats and the synthetic world: one module per dataset family — :mod:`~momentseg.data.refvos`
(MeViS, ReVOS, Ref-YouTube-VOS, Ref-DAVIS17, Ref-SAV), :mod:`~momentseg.data.tsg` (Charades-STA, ActivityNet,
QVHighlights) —, :mod:`~momentseg.data.predictions` (prediction files), :mod:`~momentseg.data.benchmarks` (the
benchmark names), :mod:`~momentseg.data.files` (annotation file reading) and :mod:`~momentseg.data.synthetic`."""
