"""Joint TSG + RefVOS training."""
