"""Pure propagation policies: which frames each SAM2 pass visits, and the anchor-update rule.

Modes
-----
* ``bap`` (Bidirectional Anchor-updated Propagation): pass 1 goes forward from the anchor to the last frame with
  the keyframes ≥ anchor as conditioning frames; pass 2 starts from a fresh state, conditions on the keyframes
  ≤ anchor and goes in reverse from the anchor to frame 0. The anchor is output once (by pass 1). The anchor must
  be a keyframe.
* ``forward`` (Sa2VA-style): one forward pass from the first keyframe to the last frame, all keyframes
  conditioning. Frames before the first keyframe are not tracked: they get empty masks.
* ``anchor-forward``: one forward pass from the anchor, keyframes ≥ anchor conditioning; frames before the
  anchor get empty masks.

Anchor update (method.md)
-------------------------
Within a pass, keep the product of sigmoid(object score) over the propagated (non-keyframe) frames since the
last reset. On reaching a keyframe other than the pass's start, if that product < ``ratio`` (0.9) × the
keyframe's own object probability, the non-conditioning memory within ±``radius`` (7) frames of the keyframe is
cleared and the product is reset to 1. Keyframes themselves do not enter the product. The rule can be switched
off (``anchor_update=False`` in :func:`momentseg.propagation.bap.propagate`, an ablation; on is the method);
:func:`fired_updates` replays it over a run's object probabilities (which keyframes cleared memory).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from momentseg.errors import InputError

Mode = Literal["bap", "forward", "anchor-forward"]
MODES: tuple[str, ...] = ("bap", "forward", "anchor-forward")
DEFAULT_MODE: Mode = "bap"  # the method; the default of every entry point
#: Anchor update fires when product < UPDATE_RATIO × the keyframe's object probability.
UPDATE_RATIO = 0.9
#: Non-conditioning memory within ±UPDATE_RADIUS frames of the keyframe is cleared on an update.
UPDATE_RADIUS = 7


@dataclass(frozen=True)
class Pass:
    """One SAM2 propagation pass over a fresh state.

    ``frames``: visit order (the first is the start frame, a conditioning keyframe); ``reverse``: direction;
    ``conditioning``: the keyframes prompted in this pass (sorted); ``emit``: the frames whose result this pass
    contributes to the output, in visit order.
    """

    frames: tuple[int, ...]
    reverse: bool
    conditioning: tuple[int, ...]
    emit: tuple[int, ...]


@dataclass(frozen=True)
class Plan:
    """The passes to run and the frames that no pass tracks (they get empty masks)."""

    num_frames: int
    passes: tuple[Pass, ...]
    empty: tuple[int, ...]

    def output_order(self) -> list[int]:
        """Frames in the order results are produced: each pass's ``emit`` in turn, then the empty frames."""
        return [f for p in self.passes for f in p.emit] + list(self.empty)


def bap_plan(num_frames: int, keyframes, anchor: int, mode: Mode = DEFAULT_MODE) -> Plan:
    """The ordered visits for ``mode`` over ``num_frames`` frames (see the module docstring)."""
    if mode not in MODES:
        raise InputError(f"unknown propagation mode {mode!r}; choose one of {', '.join(MODES)}")
    if num_frames < 1:
        raise InputError(f"cannot propagate over {num_frames} frames")
    keys = tuple(sorted({int(k) for k in keyframes}))
    if not keys:
        raise InputError("propagation needs at least one keyframe")
    if keys[0] < 0 or keys[-1] >= num_frames:
        raise InputError(f"keyframes must lie in [0, {num_frames}), got {keys[0]}..{keys[-1]}")
    anchor = int(anchor)
    if mode != "forward" and anchor not in keys:
        raise InputError(f"the anchor frame {anchor} must be one of the keyframes {list(keys)}")

    start = keys[0] if mode == "forward" else anchor
    fwd_frames = tuple(range(start, num_frames))
    forward = Pass(fwd_frames, False, tuple(k for k in keys if k >= start), fwd_frames)
    if mode != "bap":
        return Plan(num_frames, (forward,), tuple(range(start)))
    passes = [forward]
    if anchor > 0:
        back_frames = tuple(range(anchor, -1, -1))
        passes.append(Pass(back_frames, True, tuple(k for k in keys if k <= anchor), back_frames[1:]))
    return Plan(num_frames, tuple(passes), ())


def memory_window(frame: int, num_frames: int, radius: int = UPDATE_RADIUS) -> range:
    """Frames within ±radius of ``frame``, clipped to the video."""
    return range(max(0, frame - radius), min(num_frames, frame + radius + 1))


class AnchorTracker:
    """The anchor-update rule for one pass (pure; feed it object probabilities in visit order).

    The product is kept as a sum of logs so that long videos do not underflow.
    """

    def __init__(self, ratio: float = UPDATE_RATIO):
        if not 0 < ratio:
            raise InputError(f"anchor update ratio must be positive, got {ratio}")
        self.log_ratio = math.log(ratio)
        self.log_product = 0.0

    @property
    def product(self) -> float:
        """Product of the object probabilities of the propagated frames since the last reset."""
        return math.exp(self.log_product)

    def observe(self, object_prob: float) -> None:
        """Record a propagated (non-keyframe) frame's object probability sigmoid(score) in [0, 1]."""
        self.log_product += math.log(object_prob) if object_prob > 0 else -math.inf

    def at_keyframe(self, keyframe_prob: float) -> bool:
        """On reaching a keyframe: True (and reset) if product < ratio × the keyframe's object probability."""
        if keyframe_prob <= 0:
            return False
        fire = self.log_product < self.log_ratio + math.log(keyframe_prob)
        if fire:
            self.log_product = 0.0
        return fire


def fired_updates(plan: Plan, object_probs, *, enabled: bool = True, ratio: float = UPDATE_RATIO) -> list[int]:
    """The keyframes at which the anchor-update rule clears memory, in visit order, given each frame's object
    probability ``object_probs`` (T,) from a run of ``plan`` (frame-indexed, e.g. the ``object_prob`` of
    :func:`momentseg.propagation.bap.propagate`'s outputs); ``enabled=False`` (the rule switched off): none.

    Pure replay of :class:`AnchorTracker` pass by pass: the pass's start frame is skipped, a non-keyframe enters
    the product, a keyframe is tested. It is exact for the outputs of a run, since every frame a pass visits
    after its start is output by that pass.
    """
    if not enabled:
        return []
    probs = [float(x) for x in object_probs]
    if len(probs) != plan.num_frames:
        raise InputError(f"object_probs has {len(probs)} values for a plan over {plan.num_frames} frames")
    fired = []
    for spec in plan.passes:
        tracker = AnchorTracker(ratio)
        keys = set(spec.conditioning)
        for f in spec.frames[1:]:
            if f not in keys:
                tracker.observe(probs[f])
            elif tracker.at_keyframe(probs[f]):
                fired.append(f)
    return fired
