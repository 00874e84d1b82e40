"""Dataset formats (MeViS, ReVOS, Ref-YouTube-VOS, Ref-DAVIS17, Ref-SAV, Charades-STA, ActivityNet, QVHighlights) and the synthetic world."""
