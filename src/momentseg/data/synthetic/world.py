"""Simulate and render one synthetic scene: shapes that move, stop, turn, bounce, change colour, enter, leave
and pass behind one another.  Pure numpy; every random draw comes from one ``numpy.random.Generator``."""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from momentseg.data.synthetic.config import COLOURS, DIRECTIONS, PALETTE, SHAPES, SIDES, SIZES, WorldConfig
from momentseg.data.synthetic.records import Event, ObjectTrack, runs

# Scripted actions an object can perform once it is fully inside the frame.
_MOVING_ACTIONS = ("stop", "stop_wall", "turn_around", "turn", "leave", "colour")
_MOVING_WEIGHTS = (0.22, 0.12, 0.14, 0.14, 0.12, 0.26)
_REST_ACTIONS = ("start", "colour")
_REST_WEIGHTS = (0.6, 0.4)
# Kinds a look-alike group may share (each member doing it at a different time).
_SHARED_KINDS = ("enter", "stop", "colour", "turn_around", "leave", "start")
_MIN_GAP = 15  # frames between two scripted actions of one object / between look-alikes' shared actions
_SIDE_OF_DIRECTION = {(-1, 0): "left", (1, 0): "right", (0, -1): "top", (0, 1): "bottom"}


# --------------------------------------------------------------------------------------------- shapes
def _polygon_mask(points: list[tuple[float, float]], radius: int) -> np.ndarray:
    """(2r+1, 2r+1) bool: pixel centres inside the polygon (even-odd rule), coordinates relative to the centre."""
    coords = np.arange(-radius, radius + 1, dtype=np.float64)
    py, px = np.meshgrid(coords, coords, indexing="ij")
    inside = np.zeros(py.shape, dtype=bool)
    for (x1, y1), (x2, y2) in zip(points, points[1:] + points[:1], strict=True):
        if y1 == y2:
            continue
        crosses = (y1 > py) != (y2 > py)
        x_at = (x2 - x1) * (py - y1) / (y2 - y1) + x1
        inside ^= crosses & (px < x_at)
    return inside


@functools.cache
def shape_mask(shape: str, radius: int) -> np.ndarray:
    """(2r+1, 2r+1) bool read-only mask of ``shape`` centred on the canvas (computed once per shape/size)."""
    coords = np.arange(-radius, radius + 1, dtype=np.float64)
    y, x = np.meshgrid(coords, coords, indexing="ij")
    r = float(radius)
    if shape == "circle":
        mask = x * x + y * y <= r * r + 0.5
    elif shape == "square":
        mask = (np.abs(x) <= 0.8 * r) & (np.abs(y) <= 0.8 * r)
    elif shape == "diamond":
        mask = np.abs(x) + np.abs(y) <= r
    elif shape == "cross":
        arm = 0.34 * r
        mask = ((np.abs(x) <= arm) & (np.abs(y) <= r)) | ((np.abs(y) <= arm) & (np.abs(x) <= r))
    elif shape == "triangle":
        mask = _polygon_mask([(0.0, -r - 0.5), (r + 0.5, 0.8 * r + 0.5), (-r - 0.5, 0.8 * r + 0.5)], radius)
    elif shape == "star":
        pts = []
        for k in range(10):
            rad = (r + 0.5) if k % 2 == 0 else 0.45 * r
            ang = -math.pi / 2 + k * math.pi / 5
            pts.append((rad * math.cos(ang), rad * math.sin(ang)))
        mask = _polygon_mask(pts, radius)
    else:
        raise ValueError(f"unknown shape {shape!r}")
    mask = np.ascontiguousarray(mask)
    mask.setflags(write=False)
    return mask


# --------------------------------------------------------------------------------------------- background
def render_background(rng: np.random.Generator, config: WorldConfig) -> np.ndarray:
    """(H,W,3) uint8 dark background: a plain tinted grey, or that plus mild low-frequency texture."""
    h, w = config.height, config.width
    base = rng.uniform(25, 70) + rng.uniform(-8, 8, size=3)
    bg = np.broadcast_to(base, (h, w, 3)).astype(np.float32)
    if rng.random() < config.p_texture:
        for c in range(3):
            coarse = rng.normal(0.0, 1.0, size=(4, 5)).astype(np.float32)
            smooth = np.asarray(Image.fromarray(coarse, mode="F").resize((w, h), Image.BILINEAR))
            bg[:, :, c] += 9.0 * smooth
        bg += rng.uniform(-3, 3, size=(h, w, 1)).astype(np.float32)
    return np.clip(np.rint(bg), 0, 255).astype(np.uint8)


# --------------------------------------------------------------------------------------------- planning
@dataclass
class _ObjectPlan:
    shape: str
    size: str
    colour: str
    enter_frame: int | None = None  # None: inside the frame from frame 0
    enter_side: str = "left"
    moving: bool = True
    speed: float = 1.5
    direction: tuple[int, int] = (1, 0)
    actions: list[tuple[int, str | None]] = field(default_factory=list)  # (frame, forced kind or None)
    start_xy: tuple[float, float] = (0.0, 0.0)


def _random_direction(rng: np.random.Generator) -> tuple[int, int]:
    return list(DIRECTIONS.values())[int(rng.integers(4))]


def _spaced_times(rng: np.random.Generator, n: int, lo: int, hi: int, gap: int) -> list[int]:
    """Up to ``n`` sorted frame indices in [lo, hi] at least ``gap`` apart (fewer if they do not fit)."""
    times: list[int] = []
    for _ in range(n):
        for _try in range(20):
            t = int(rng.integers(lo, hi + 1)) if hi >= lo else lo
            if all(abs(t - u) >= gap for u in times):
                times.append(t)
                break
    return sorted(times)


def plan_scene(rng: np.random.Generator, config: WorldConfig, num_frames: int) -> list[_ObjectPlan]:
    """Draw the objects of one video: appearance, entry, initial motion and scripted actions."""
    cfg, T = config, num_frames
    n = int(rng.integers(cfg.min_objects, cfg.max_objects + 1))
    looks, group = _draw_looks(rng, cfg, n)
    shared = str(rng.choice(_SHARED_KINDS)) if group and rng.random() < 0.6 else None
    shared_times = _spaced_times(rng, group, int(0.1 * T), int(0.7 * T), _MIN_GAP) if shared else []

    plans = []
    for i, look in enumerate(looks):
        shared_time = shared_times[i] if i < len(shared_times) else None
        plans.append(_plan_object(rng, cfg, T, look, i < group, shared, shared_time))
    order = rng.permutation(n)
    return [plans[int(k)] for k in order]


def _draw_looks(rng: np.random.Generator, cfg: WorldConfig, n: int) -> tuple[list[tuple[str, str, str]], int]:
    """The (shape, size, colour) of ``n`` objects, the first ``group`` of them (returned too) look-alikes."""
    looks: list[tuple[str, str, str]] = []
    group = 0
    if n >= 2 and rng.random() < cfg.p_lookalike:
        group = 3 if (n >= 4 and rng.random() < 0.15) else 2
        look = (SHAPES[rng.integers(len(SHAPES))], str(rng.choice(list(SIZES))), COLOURS[rng.integers(len(COLOURS))])
        looks += [look] * group
    while len(looks) < n:
        looks.append(
            (SHAPES[rng.integers(len(SHAPES))], str(rng.choice(list(SIZES))), COLOURS[rng.integers(len(COLOURS))])
        )
    return looks, group


def _plan_object(
    rng: np.random.Generator,
    cfg: WorldConfig,
    T: int,
    look: tuple[str, str, str],
    in_group: bool,
    shared: str | None,
    shared_time: int | None,
) -> _ObjectPlan:
    """Draw one object's entry, motion and actions; ``shared_time``: its slot in the group's shared event."""
    shape, size, colour = look
    p = _ObjectPlan(shape=shape, size=size, colour=colour)
    p.speed = float(rng.uniform(cfg.min_speed, cfg.max_speed))
    enters = rng.random() < cfg.p_enter
    starts_moving = rng.random() < cfg.p_moving
    if in_group and shared == "enter" and shared_time is not None:
        enters = True
    if in_group and shared == "start":
        enters, starts_moving = False, False
    if enters:
        if in_group and shared == "enter" and shared_time is not None:
            p.enter_frame = shared_time
        else:
            p.enter_frame = int(rng.integers(max(1, int(0.05 * T)), int(0.6 * T) + 1))
        p.enter_side = SIDES[int(rng.integers(4))]
        p.moving = True
    else:
        p.moving = starts_moving
    p.direction = _random_direction(rng)
    r = SIZES[size]
    p.start_xy = (float(rng.uniform(r, cfg.width - 1 - r)), float(rng.uniform(r, cfg.height - 1 - r)))
    first = (p.enter_frame or 0) + 10
    p.actions = _plan_actions(rng, cfg, T, first, in_group, shared, shared_time)
    return p


def _plan_actions(
    rng: np.random.Generator,
    cfg: WorldConfig,
    T: int,
    first: int,
    in_group: bool,
    shared: str | None,
    shared_time: int | None,
) -> list[tuple[int, str | None]]:
    """One object's scripted actions ``(frame, kind)`` from frame ``first`` on (kind None: drawn later)."""
    n_act = int(rng.choice([0, 1, 2, 3], p=[0.15, 0.4, 0.3, 0.15]))
    if in_group:
        n_act = max(n_act, 1)
    times = _spaced_times(rng, n_act, first, T - 12, _MIN_GAP)
    actions: list[tuple[int, str | None]] = [(t, None) for t in times]
    if rng.random() < cfg.p_leave and not (in_group and shared == "leave"):
        t_leave = int(rng.integers(max(first, int(0.2 * T)), max(first, int(0.6 * T)) + 1))
        actions = [(t, k) for t, k in actions if t <= t_leave - _MIN_GAP] + [(t_leave, "leave")]
    if in_group and shared not in (None, "enter") and shared_time is not None:
        t_shared = max(shared_time, first)
        actions = [(t, k) for t, k in actions if abs(t - t_shared) >= _MIN_GAP]
        if shared == "leave":
            actions = [(t, k) for t, k in actions if t < t_shared]
        actions.append((t_shared, shared))
        actions.sort(key=lambda a: a[0])
    leaves = [k for k, (_, kind) in enumerate(actions) if kind == "leave"]
    if leaves:  # leaving is the last thing an object does
        actions = actions[: leaves[0] + 1]
    return actions


# --------------------------------------------------------------------------------------------- simulation
@dataclass
class _Motion:
    """Per-frame state arrays of one simulated object (see :class:`ObjectTrack`)."""

    centre: np.ndarray
    present: np.ndarray
    speed: np.ndarray
    direction: np.ndarray
    rgb: np.ndarray
    colour: np.ndarray
    events: list[Event]
    leave_frame: int | None
    enter_frame: int | None
    enter_side: str | None


def _room(x: float, y: float, d: tuple[int, int], r: int, config: WorldConfig) -> float:
    """Pixels the object can travel in direction ``d`` before touching the wall."""
    if d[0] < 0:
        return x - r
    if d[0] > 0:
        return config.width - 1 - r - x
    if d[1] < 0:
        return y - r
    return config.height - 1 - r - y


def simulate_object(
    rng: np.random.Generator, plan: _ObjectPlan, config: WorldConfig, num_frames: int
) -> _Motion:
    """Run ``plan`` frame by frame: scripted actions, speed ramps, colour blends and wall bounces."""
    sim = _Simulation(rng, plan, config, num_frames)
    for t in range(num_frames):
        sim.step(t)
    return sim.result()


class _Simulation:
    """The state of one object while :func:`simulate_object` runs its plan (position, direction, speed, colour,
    the transient speed ramp / colour blend, the motion mode) and the per-frame records. The random draws happen in
    a fixed order (the split seeds define the datasets), so a change here changes every generated video."""

    def __init__(self, rng: np.random.Generator, plan: _ObjectPlan, config: WorldConfig, num_frames: int):
        T, cfg = num_frames, config
        self.rng, self.plan, self.cfg, self.T = rng, plan, cfg, T
        r = self.r = SIZES[plan.size]
        self.win = max(1, int(round(cfg.instant_window_s * cfg.fps)))
        self.bounds = (r, cfg.width - 1 - r, r, cfg.height - 1 - r)
        self.centre = np.zeros((T, 2), np.float64)
        self.present = np.zeros(T, bool)
        self.speed_a = np.zeros(T, np.float64)
        self.direc = np.zeros((T, 2), np.int64)
        self.rgb_a = np.zeros((T, 3), np.uint8)
        self.colour_a = np.zeros(T, np.int8)
        self.events: list[Event] = []
        self.x, self.y = plan.start_xy
        self.d = plan.direction
        self.speed = plan.speed if plan.moving else 0.0
        self.cruise = plan.speed
        self.mode = "bounded"
        if plan.enter_frame is not None:
            self.mode = "waiting"
            side = plan.enter_side
            if side == "left":
                self.x, self.d = -r - 1.0, (1, 0)
            elif side == "right":
                self.x, self.d = cfg.width + r + 0.0, (-1, 0)
            elif side == "top":
                self.y, self.d = -r - 1.0, (0, 1)
            else:
                self.y, self.d = cfg.height + r + 0.0, (0, -1)
        self.colour_idx = COLOURS.index(plan.colour)
        self.rgb = np.array(PALETTE[plan.colour], np.float64)
        self.ramp: tuple[int, int, float, float] | None = None  # (t0, duration, from, to)
        self.blend: tuple[int, int, np.ndarray, np.ndarray, int] | None = None
        self.armed = False
        self.leave_frame = None
        self.pending = list(plan.actions)

    def step(self, t: int) -> None:
        if self.mode == "waiting" and t == self.plan.enter_frame:
            self.mode = "entering"
        self._scripted_actions(t)
        self._ramp_and_blend(t)
        self.centre[t] = (self.x, self.y)
        self.present[t] = self.mode in ("entering", "bounded", "leaving")
        self.speed_a[t] = self.speed if self.present[t] else 0.0
        self.direc[t] = self.d
        self.rgb_a[t] = np.rint(self.rgb).astype(np.uint8)
        self.colour_a[t] = self.colour_idx
        if self.present[t]:
            self._move(t)

    def _next_action(self, t: int) -> str | None:
        """The kind of the first pending action due at ``t``, or None when it must wait (postponed while the
        object is in a transient motion state, or a colour blend runs)."""
        forced = self.pending[0][1]
        transient = self.ramp is not None or self.armed
        if transient and forced != "colour":
            if forced is None and self.blend is None:
                kind = "colour"
            else:
                return None
        elif self.speed > 0:
            options = [k for k in _MOVING_ACTIONS if not (k == "leave" and len(self.pending) > 1)]
            weights = np.array([w for k, w in zip(_MOVING_ACTIONS, _MOVING_WEIGHTS, strict=True) if k in options])
            kind = forced if forced in options else str(self.rng.choice(options, p=weights / weights.sum()))
        elif forced == "leave":  # at rest: start moving first, leave a little later
            kind = "start"
            self.pending.insert(1, (t + 12, "leave"))
        else:
            kind = forced if forced in _REST_ACTIONS else str(self.rng.choice(_REST_ACTIONS, p=_REST_WEIGHTS))
        if kind == "colour" and self.blend is not None:
            return None
        return kind

    def _scripted_actions(self, t: int) -> None:
        # scripted actions (postponed while the object is entering or in a transient motion state)
        while self.pending and self.pending[0][0] <= t and self.mode == "bounded":
            kind = self._next_action(t)
            if kind is None:
                break
            self.pending.pop(0)
            if t > self.T - 8:
                continue
            self._start_action(kind, t)

    def _start_action(self, kind: str, t: int) -> None:
        rng, cfg, r, x, y, d, win = self.rng, self.cfg, self.r, self.x, self.y, self.d, self.win
        if kind == "stop":
            dur = int(rng.integers(5, 13))
            self.ramp = (t, dur, self.speed, 0.0)
            self.events.append(Event("stop", t, t + dur - 1))
        elif kind == "stop_wall":
            self.armed = True
        elif kind == "start":
            options_d = [v for v in DIRECTIONS.values() if _room(x, y, v, r, cfg) >= 20]
            self.d = options_d[int(rng.integers(len(options_d)))] if options_d else d
            self.cruise = float(rng.uniform(cfg.min_speed, cfg.max_speed))
            dur = int(rng.integers(5, 11))
            self.ramp = (t, dur, 0.0, self.cruise)
            self.events.append(Event("start", t, t + dur - 1))
        elif kind == "turn_around":
            if _room(x, y, (-d[0], -d[1]), r, cfg) >= 20 and _room(x, y, d, r, cfg) >= 6:
                self.d = (-d[0], -d[1])
                self.events.append(Event("turn_around", t - win, t + win))
        elif kind == "turn":
            perp = [(d[1], d[0]), (-d[1], -d[0])]
            perp = [v for v in perp if _room(x, y, v, r, cfg) >= 20]
            if perp and _room(x, y, d, r, cfg) >= 6:
                self.d = perp[int(rng.integers(len(perp)))]
                name = next(k for k, v in DIRECTIONS.items() if v == self.d)
                self.events.append(Event("turn", t - win, t + win, name))
        elif kind == "colour":
            new = int(rng.choice([k for k in range(len(COLOURS)) if k != self.colour_idx]))
            dur = int(rng.integers(6, 13))
            self.blend = (t, dur, self.rgb.copy(), np.array(PALETTE[COLOURS[new]], np.float64), new)
            self.events.append(Event("colour", t, t + dur - 1, COLOURS[new]))
        elif kind == "leave":
            self.mode, self.leave_frame = "leaving", t

    def _ramp_and_blend(self, t: int) -> None:
        if self.ramp is not None:
            t0, dur, s_from, s_to = self.ramp
            self.speed = s_from + (s_to - s_from) * (t - t0 + 1) / dur
            if t >= t0 + dur - 1:
                self.speed, self.ramp = s_to, None
        if self.blend is not None:
            t0, dur, c_from, c_to, new = self.blend
            self.rgb = c_from + (c_to - c_from) * (t - t0 + 1) / dur
            self.colour_idx = -1
            if t >= t0 + dur - 1:
                self.rgb, self.colour_idx, self.blend = c_to, new, None

    def _move(self, t: int) -> None:
        """One frame of motion: bounce off walls while bounded (a "stop at the wall" action stops there)."""
        d = self.d
        self.x += d[0] * self.speed
        self.y += d[1] * self.speed
        x, y, r, cfg = self.x, self.y, self.r, self.cfg
        lo_x, hi_x, lo_y, hi_y = self.bounds
        if self.mode == "bounded":
            wall = None
            if x < lo_x:
                x, d, wall = 2 * lo_x - x, (-d[0], d[1]), "left"
            elif x > hi_x:
                x, d, wall = 2 * hi_x - x, (-d[0], d[1]), "right"
            elif y < lo_y:
                y, d, wall = 2 * lo_y - y, (d[0], -d[1]), "top"
            elif y > hi_y:
                y, d, wall = 2 * hi_y - y, (d[0], -d[1]), "bottom"
            self.x, self.y, self.d = x, y, d
            if wall is not None and t + 1 < self.T:
                self.events.append(Event("bounce", t + 1 - self.win, t + 1 + self.win, wall))
                if self.armed:
                    self.armed = False
                    dur = int(self.rng.integers(5, 13))
                    self.ramp = (t + 1, dur, self.speed, 0.0)
                    self.events.append(Event("stop_wall", t + 1, t + dur))
        elif self.mode == "entering":
            if lo_x <= x <= hi_x and lo_y <= y <= hi_y:
                self.mode = "bounded"
        elif self.mode == "leaving":
            if x + r < 0 or x - r > cfg.width - 1 or y + r < 0 or y - r > cfg.height - 1:
                self.mode = "gone"

    def result(self) -> _Motion:
        T, plan = self.T, self.plan
        # a speed / colour ramp cut by the end of the video is not a complete event: drop it; windows are clipped
        events = [e for e in self.events if not (e.kind in ("stop", "stop_wall", "start", "colour") and e.end > T - 1)]
        for ev in events:
            ev.start, ev.end = max(0, ev.start), min(T - 1, ev.end)
        return _Motion(
            centre=self.centre,
            present=self.present,
            speed=self.speed_a,
            direction=self.direc,
            rgb=self.rgb_a,
            colour=self.colour_a,
            events=events,
            leave_frame=self.leave_frame,
            enter_frame=plan.enter_frame,
            enter_side=plan.enter_side if plan.enter_frame is not None else None,
        )


# --------------------------------------------------------------------------------------------- rendering
def _paste_box(cx: float, cy: float, r: int, config: WorldConfig) -> tuple[slice, slice, slice, slice] | None:
    """Frame slices (ys, xs) and canvas slices (cys, cxs) of a shape centred at (cx, cy); None if off-frame."""
    ix, iy = math.floor(cx + 0.5), math.floor(cy + 0.5)
    x0, y0 = ix - r, iy - r
    fx0, fx1 = max(x0, 0), min(x0 + 2 * r + 1, config.width)
    fy0, fy1 = max(y0, 0), min(y0 + 2 * r + 1, config.height)
    if fx0 >= fx1 or fy0 >= fy1:
        return None
    return slice(fy0, fy1), slice(fx0, fx1), slice(fy0 - y0, fy1 - y0), slice(fx0 - x0, fx1 - x0)


def render(
    background: np.ndarray, plans: list[_ObjectPlan], motions: list[_Motion], config: WorldConfig
) -> tuple[np.ndarray, list[np.ndarray], list[np.ndarray]]:
    """Composite the objects back to front.

    Returns frames (T,H,W,3) uint8, and per object its full in-frame mask and its visible mask, (T,H,W) bool.
    """
    T = motions[0].present.shape[0] if motions else 0
    h, w = config.height, config.width
    frames = np.broadcast_to(background, (T, h, w, 3)).copy()
    full = [np.zeros((T, h, w), bool) for _ in plans]
    order = list(range(len(plans)))  # object k has depth k: later objects are nearer
    for t in range(T):
        for k in order:
            m = motions[k]
            if not m.present[t]:
                continue
            r = SIZES[plans[k].size]
            box = _paste_box(m.centre[t, 0], m.centre[t, 1], r, config)
            if box is None:
                continue
            ys, xs, cys, cxs = box
            sub = shape_mask(plans[k].shape, r)[cys, cxs]
            full[k][t, ys, xs] = sub
            frames[t, ys, xs][sub] = m.rgb[t]
    visible = [np.zeros((T, h, w), bool) for _ in plans]
    covered = np.zeros((T, h, w), bool)
    for k in reversed(order):
        np.logical_and(full[k], ~covered, out=visible[k])
        covered |= full[k]
    return frames, full, visible


# --------------------------------------------------------------------------------------------- timelines
def _edge_events(m: _Motion, fa: np.ndarray, canvas: int) -> list[Event]:
    """enter / leave from how much of the shape (``fa``: its in-frame area per frame) is inside the frame."""
    T = fa.shape[0]
    events = []
    if m.enter_frame is not None:
        seen = np.flatnonzero(fa > 0)
        if seen.size:
            a = int(seen[0])
            whole = np.flatnonzero((fa == canvas) & (np.arange(T) >= a))
            b = int(whole[0]) if whole.size else T - 1
            events.append(Event("enter", a, max(b, a), m.enter_side))
    if m.leave_frame is not None:
        after = np.arange(T) >= m.leave_frame
        cut = np.flatnonzero(after & (fa < canvas))
        if cut.size:
            a = int(cut[0])
            gone = np.flatnonzero(after & (np.arange(T) > a) & (fa == 0))
            b = int(gone[0]) - 1 if gone.size else T - 1
            d = tuple(int(v) for v in m.direction[a])
            events.append(Event("leave", a, max(a, b), _SIDE_OF_DIRECTION.get(d)))
    return events


def _behind_events(k: int, plans: list[_ObjectPlan], motions: list[_Motion], full: list[np.ndarray],
                   canvas: int) -> list[Event]:
    """behind: another, nearer object (a higher index) covers part of object ``k``."""
    m, r = motions[k], SIZES[plans[k].size]
    T = m.present.shape[0]
    events = []
    for j in range(k + 1, len(plans)):
        both = m.present & motions[j].present
        near = both & (np.abs(m.centre - motions[j].centre).max(1) <= r + SIZES[plans[j].size] + 1)
        if not near.any():
            continue
        hidden = np.zeros(T, np.int64)
        idx = np.flatnonzero(near)
        hidden[idx] = (full[k][idx] & full[j][idx]).reshape(idx.size, -1).sum(1)
        for a, b in runs(hidden > 0):  # a run counts when it hides >= 30 % of the shape at its peak
            if b - a >= 2 and hidden[a : b + 1].max() >= 0.3 * canvas:
                events.append(Event("behind", a, b, j))
    return events


def build_tracks(
    plans: list[_ObjectPlan],
    motions: list[_Motion],
    full: list[np.ndarray],
    visible: list[np.ndarray],
    config: WorldConfig,
) -> list[ObjectTrack]:
    """Turn the simulation into :class:`ObjectTrack` s and add the events seen only after rendering:
    enter / leave (from how much of the shape is inside the frame) and behind (from occlusion)."""
    T = motions[0].present.shape[0]
    full_area = [f.reshape(T, -1).sum(1) for f in full]
    vis_area = [v.reshape(T, -1).sum(1) for v in visible]
    tracks = []
    for k, (p, m) in enumerate(zip(plans, motions, strict=True)):
        r = SIZES[p.size]
        canvas = int(shape_mask(p.shape, r).sum())
        fa = full_area[k]
        events = list(m.events) + _edge_events(m, fa, canvas) + _behind_events(k, plans, motions, full, canvas)
        named = [COLOURS[c] for c in m.colour[m.present] if c >= 0]
        for ev in events:
            frames_in = vis_area[k][ev.start : ev.end + 1]
            ev.observable = bool((frames_in > 0).mean() >= 0.5) if frames_in.size else False
        events.sort(key=lambda e: (e.start, e.end, e.kind))
        tracks.append(
            ObjectTrack(
                obj_id=k,
                shape=p.shape,
                size=p.size,
                depth=k,
                base_colour=named[0] if named else p.colour,
                centre=m.centre,
                present=m.present,
                speed=m.speed,
                direction=m.direction,
                rgb=m.rgb,
                colour=m.colour,
                full_area=fa,
                visible_area=vis_area[k],
                canvas_area=canvas,
                events=events,
            )
        )
    return tracks


def simulate_scene(
    rng: np.random.Generator, config: WorldConfig
) -> tuple[np.ndarray, list[ObjectTrack], dict[int, np.ndarray], dict[int, np.ndarray]]:
    """Draw, simulate and render one scene.

    Returns frames (T,H,W,3) uint8, the object tracks, and obj_id -> (T,H,W) bool full and visible masks.
    """
    T = int(rng.integers(config.min_frames, config.max_frames + 1))
    background = render_background(rng, config)
    plans = plan_scene(rng, config, T)
    motions = [simulate_object(rng, p, config, T) for p in plans]
    frames, full, visible = render(background, plans, motions, config)
    tracks = build_tracks(plans, motions, full, visible, config)
    return frames, tracks, dict(enumerate(full)), dict(enumerate(visible))
