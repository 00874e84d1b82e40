"""Evaluation: DAVIS J/F, ReVOS A/R, TSG R1/mIoU/mAP, and the benchmark protocols."""
