"""A procedural referring-video world in which *when* matters.

Shapes (circle, square, triangle, star, cross, diamond; six named colours; three sizes) move along the axes,
stop, start, turn, bounce off walls, change colour, enter and leave the frame and pass behind one another.
Look-alikes share shape, colour and size with a target but live another timeline.  Each video carries
referring expressions built from its timeline (appearance, motion, event, multi-object, reasoning questions,
no-target) with ground-truth visible masks and moments in seconds, over the closed :data:`VOCABULARY`.

Public API::

    generate_video(seed, video_id="vid_00000", config=WorldConfig()) -> SynthVideo
    iter_videos(seed, n=None, config=WorldConfig()) -> Iterator[SynthVideo]     # video i from video_seed(seed, i)
    all_expressions(video, rng) -> list[SynthExpression]    # every expression the language could say (training)
    write_split(out_dir, n_videos, seed, config=WorldConfig(), workers=1) -> dict   # MeViS folder, stats
    SPLIT_SEEDS, VOCABULARY, tokenize(text)
"""

from momentseg.data.synthetic.captions import (
    CAPTION_KINDS,
    CAPTION_WORDS,
    CaptionPair,
    caption_pairs,
    caption_vocabulary,
    format_time,
    objects_f1,
    parse_time,
    time_error,
    where_answer,
)
from momentseg.data.synthetic.config import (
    COLOURS,
    EXPRESSION_KINDS,
    MOTION_CLASSES,
    PALETTE,
    PIXEL_CLASS_COUNTS,
    SHAPES,
    SIZES,
    SPLIT_SEEDS,
    TOKEN_CLASS_COUNTS,
    WorldConfig,
)
from momentseg.data.synthetic.language import VOCABULARY, tokenize
from momentseg.data.synthetic.records import EVENT_KINDS, Event, ObjectTrack, SynthExpression, SynthVideo
from momentseg.data.synthetic.split import expression_flags, split_stats, write_split
from momentseg.data.synthetic.video import all_expressions, generate_video, iter_videos, video_id, video_seed

__all__ = [
    "CAPTION_KINDS",
    "CAPTION_WORDS",
    "CaptionPair",
    "caption_pairs",
    "caption_vocabulary",
    "format_time",
    "objects_f1",
    "parse_time",
    "time_error",
    "where_answer",
    "COLOURS",
    "MOTION_CLASSES",
    "PIXEL_CLASS_COUNTS",
    "TOKEN_CLASS_COUNTS",
    "EXPRESSION_KINDS",
    "EVENT_KINDS",
    "PALETTE",
    "SHAPES",
    "SIZES",
    "SPLIT_SEEDS",
    "VOCABULARY",
    "Event",
    "ObjectTrack",
    "SynthExpression",
    "SynthVideo",
    "WorldConfig",
    "expression_flags",
    "all_expressions",
    "generate_video",
    "iter_videos",
    "split_stats",
    "tokenize",
    "video_id",
    "video_seed",
    "write_split",
]
