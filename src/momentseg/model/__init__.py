"""The MomentSeg model: Qwen2.5-VL + SAM2 backbones from transformers, [FIND] / [SEG] heads, presets, checkpoints."""
