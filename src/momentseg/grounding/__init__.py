"""Frame-query similarity -> moments (the TSG answer) and keyframe sampling (Moment-Centric Sampling and baselines)."""
