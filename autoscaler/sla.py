"""SLA mode in the style of Dynamo's planner: prefill and decode replicas from TTFT/ITL
targets, profiled capacity per replica, a correction factor, and a load predictor.

Each interval: predict the next interval's request count, ISL and OSL; correct the
profile with observed/expected latency; then

    prefill = ceil(N·isl/I · min(1, p_corr) / prefill_thpt_per_gpu(isl) / gpus_per_prefill)
    decode  = ceil(N·osl/I / best_decode_thpt_per_gpu(ITL_target / d_corr, isl + osl/2) / gpus_per_decode)

both at least ``min_endpoint``; over the GPU budget both shrink in proportion.
"""

from __future__ import annotations

import bisect
import math
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import numpy as np


def _clean(x: float) -> float:
    return x if math.isfinite(x) else 0.0


class Predictor(Protocol):
    def observe(self, value: float) -> None: ...
    def predict(self) -> float | None: ...


@dataclass
class ConstantPredictor:
    """Next = last observed value."""

    last: float | None = None

    def observe(self, value: float) -> None:
        value = _clean(value)
        if self.last is None and value == 0:
            return  # leading zeros carry no information
        self.last = value

    def predict(self) -> float | None:
        return self.last


@dataclass
class MovingAveragePredictor:
    window: int = 5
    values: deque[float] = field(default_factory=deque)

    def __post_init__(self) -> None:
        if self.window < 1:
            raise ValueError(f"window must be >= 1, got {self.window}")

    def observe(self, value: float) -> None:
        value = _clean(value)
        if not self.values and value == 0:
            return
        self.values.append(value)
        while len(self.values) > self.window:
            self.values.popleft()

    def predict(self) -> float | None:
        return sum(self.values) / len(self.values) if self.values else None


@dataclass
class KalmanPredictor:
    """Local-linear-trend Kalman filter: state [level, trend], F=[[1,1],[0,1]], H=[1,0].

    Before `min_points` observations it answers with the last value. The forecast is one
    step ahead, clamped at zero; predicting does not advance the filter."""

    q_level: float = 1.0
    q_trend: float = 0.1
    r: float = 10.0
    min_points: int = 5
    x: np.ndarray = field(default_factory=lambda: np.zeros(2))
    p: np.ndarray = field(default_factory=lambda: np.eye(2) * 1000.0)
    n: int = 0
    last: float | None = None

    _F = np.array([[1.0, 1.0], [0.0, 1.0]])
    _H = np.array([1.0, 0.0])

    def observe(self, value: float) -> None:
        value = _clean(value)
        if self.n == 0 and value == 0:
            return
        if self.n == 0:
            self.x = np.array([value, 0.0])
        else:
            q = np.diag([self.q_level, self.q_trend])
            x = self._F @ self.x
            p = self._F @ self.p @ self._F.T + q
            s = float(self._H @ p @ self._H) + self.r
            k = (p @ self._H) / s
            self.x = x + k * (value - float(self._H @ x))
            self.p = (np.eye(2) - np.outer(k, self._H)) @ p
        self.n += 1
        self.last = value

    def predict(self) -> float | None:
        return self.forecast(1)

    def restart(self, level: float) -> None:
        """Start again from `level` with no trend (a level shift): the level is as uncertain
        as one observation, the trend as a ninth of that, so both are learned again fast."""
        self.x = np.array([_clean(level), 0.0])
        self.p = np.diag([self.r, self.r / 9])
        self.n = max(self.n, self.min_points)
        self.last = _clean(level)

    def forecast(self, steps: int) -> float | None:
        """`steps` ahead along the current trend (e.g. a replica's start-up delay)."""
        if self.n == 0:
            return None
        if self.n < self.min_points:
            return self.last
        return max(0.0, float(self.x[0] + steps * self.x[1]))


PredictorName = Literal["constant", "moving_average", "kalman"]


def make_predictor(name: PredictorName, **kw: float) -> Predictor:
    if name == "constant":
        return ConstantPredictor()
    if name == "moving_average":
        return MovingAveragePredictor(window=int(kw.get("window", 5)))
    if name == "kalman":
        return KalmanPredictor(q_level=kw.get("q_level", 1.0), q_trend=kw.get("q_trend", 0.1), r=kw.get("r", 10.0))
    raise ValueError(f"predictor must be one of constant, moving_average, kalman; got {name!r}")


@dataclass(frozen=True)
class PrefillProfile:
    """TTFT (ms) and throughput (tokens/s/GPU) of one prefill engine by input length."""

    isl: Sequence[float]
    ttft_ms: Sequence[float]
    thpt_per_gpu: Sequence[float]

    def __post_init__(self) -> None:
        if not (len(self.isl) == len(self.ttft_ms) == len(self.thpt_per_gpu) >= 1):
            raise ValueError("prefill profile: isl, ttft_ms and thpt_per_gpu need the same length >= 1")
        if list(self.isl) != sorted(self.isl):
            raise ValueError("prefill profile: isl must be ascending")

    def ttft(self, isl: float) -> float:
        return float(np.interp(isl, self.isl, self.ttft_ms))

    def throughput(self, isl: float) -> float:
        return float(np.interp(isl, self.isl, self.thpt_per_gpu))


@dataclass(frozen=True)
class DecodeProfile:
    """ITL (ms) and throughput (tokens/s/GPU) of one decode engine on a grid of KV usage
    (0..1) by context length. `itl_ms[c][k]` is at `context[c]`, `kv_usage[k]`."""

    kv_usage: Sequence[float]
    context: Sequence[float]
    itl_ms: Sequence[Sequence[float]]
    thpt_per_gpu: Sequence[Sequence[float]]
    max_kv_tokens: float

    def __post_init__(self) -> None:
        if list(self.kv_usage) != sorted(self.kv_usage) or list(self.context) != sorted(self.context):
            raise ValueError("decode profile: kv_usage and context must be ascending")
        for grid, name in ((self.itl_ms, "itl_ms"), (self.thpt_per_gpu, "thpt_per_gpu")):
            if len(grid) != len(self.context) or any(len(row) != len(self.kv_usage) for row in grid):
                raise ValueError(f"decode profile: {name} must be len(context) x len(kv_usage)")
        if self.max_kv_tokens <= 0:
            raise ValueError("decode profile: max_kv_tokens must be > 0")

    def _at_context(self, grid: Sequence[Sequence[float]], context: float) -> np.ndarray:
        cs = list(self.context)
        if context <= cs[0] or len(cs) == 1:
            return np.asarray(grid[0], dtype=float)
        if context >= cs[-1]:
            return np.asarray(grid[-1], dtype=float)
        j = bisect.bisect_right(cs, context)
        w = (context - cs[j - 1]) / (cs[j] - cs[j - 1])
        return (1 - w) * np.asarray(grid[j - 1], dtype=float) + w * np.asarray(grid[j], dtype=float)

    def itl(self, kv_usage: float, context: float) -> float:
        return float(np.interp(kv_usage, self.kv_usage, self._at_context(self.itl_ms, context)))

    def best_throughput(self, itl_target_ms: float, context: float) -> float:
        """The highest per-GPU throughput whose ITL meets the target (scan KV usage down)."""
        itl_row = self._at_context(self.itl_ms, context)
        thpt_row = self._at_context(self.thpt_per_gpu, context)
        grid = np.linspace(self.kv_usage[0], self.kv_usage[-1], 100)
        for u in grid[::-1]:
            if float(np.interp(u, self.kv_usage, itl_row)) <= itl_target_ms:
                return float(np.interp(u, self.kv_usage, thpt_row))
        return float(thpt_row[0])


@dataclass(frozen=True)
class SlaTargets:
    ttft_ms: float = 500.0
    itl_ms: float = 50.0
    interval_s: float = 60.0
    gpus_per_prefill: int = 1
    gpus_per_decode: int = 1
    min_endpoint: int = 1
    max_gpu_budget: int | None = None

    def __post_init__(self) -> None:
        if self.ttft_ms <= 0 or self.itl_ms <= 0:
            raise ValueError("SLA targets: ttft and itl must be > 0 ms")
        if self.interval_s <= 0:
            raise ValueError("SLA targets: interval must be > 0 s")
        if self.gpus_per_prefill < 1 or self.gpus_per_decode < 1:
            raise ValueError("SLA targets: GPUs per engine must be >= 1")


@dataclass(frozen=True)
class Observation:
    """One interval as observed: requests finished, mean ISL/OSL, mean TTFT/ITL."""

    num_requests: float
    isl: float
    osl: float
    ttft_ms: float | None = None
    itl_ms: float | None = None
    request_duration_s: float | None = None


@dataclass(frozen=True)
class SlaPlan:
    prefill: int
    decode: int
    p_correction: float
    d_correction: float
    predicted: tuple[float, float, float]
    reason: str


@dataclass
class SlaPlanner:
    prefill: PrefillProfile
    decode: DecodeProfile
    targets: SlaTargets = field(default_factory=SlaTargets)
    predictor: PredictorName = "kalman"
    p_correction: float = 1.0
    d_correction: float = 1.0

    def __post_init__(self) -> None:
        self._num = make_predictor(self.predictor)
        self._isl = make_predictor(self.predictor)
        self._osl = make_predictor(self.predictor)

    def observe(self, obs: Observation, current_decode: int) -> None:
        self._num.observe(obs.num_requests)
        self._isl.observe(obs.isl)
        self._osl.observe(obs.osl)
        if obs.ttft_ms is not None and obs.ttft_ms > 0 and obs.isl > 0:
            self.p_correction = obs.ttft_ms / self.prefill.ttft(obs.isl)
        if obs.itl_ms is not None and obs.itl_ms > 0 and current_decode > 0 and obs.request_duration_s:
            concurrency = obs.num_requests / current_decode * obs.request_duration_s / self.targets.interval_s
            context = obs.isl + obs.osl / 2
            kv = min(1.0, concurrency * context / self.decode.max_kv_tokens)
            self.d_correction = obs.itl_ms / self.decode.itl(kv, context)

    def plan(self) -> SlaPlan | None:
        n, isl, osl = self._num.predict(), self._isl.predict(), self._osl.predict()
        if n is None or isl is None or osl is None:
            return None
        t = self.targets
        p_load = n * isl / t.interval_s * min(1.0, self.p_correction)
        p_thpt = max(self.prefill.throughput(isl), 1e-9)
        num_p = math.ceil(p_load / p_thpt / t.gpus_per_prefill - 1e-9)
        itl_star = t.itl_ms / max(self.d_correction, 1e-9)
        d_thpt = max(self.decode.best_throughput(itl_star, isl + osl / 2), 1e-9)
        num_d = math.ceil(n * osl / t.interval_s / d_thpt / t.gpus_per_decode - 1e-9)
        num_p, num_d = max(num_p, t.min_endpoint), max(num_d, t.min_endpoint)
        reason = (f"predicted {n:.1f} req, isl {isl:.0f}, osl {osl:.0f}; p_corr {self.p_correction:.2f}, "
                  f"d_corr {self.d_correction:.2f}")
        if t.max_gpu_budget is not None:
            used = num_p * t.gpus_per_prefill + num_d * t.gpus_per_decode
            if used > t.max_gpu_budget:
                scale = t.max_gpu_budget / used
                num_p = max(t.min_endpoint, round(num_p * scale))
                num_d = max(t.min_endpoint, (t.max_gpu_budget - num_p * t.gpus_per_prefill) // t.gpus_per_decode)
                reason += f"; scaled to the GPU budget {t.max_gpu_budget}"
        return SlaPlan(num_p, num_d, self.p_correction, self.d_correction, (n, isl, osl), reason)


@dataclass(frozen=True)
class SlaMode:
    """The SLA mode of a disaggregated target (annotation `autoscaling.caldera.dev/sla`, JSON):
    targets, the two roles, the predictor and the engine profiles."""

    targets: SlaTargets
    prefill: PrefillProfile
    decode: DecodeProfile
    prefill_role: str = "prefill"
    decode_role: str = "decode"
    predictor: PredictorName = "kalman"


def sla_mode_from_json(raw: Mapping[str, Any]) -> SlaMode:
    """Parse the annotation's JSON; errors name the field."""
    try:
        p, d = raw["profile"]["prefill"], raw["profile"]["decode"]
        prefill = PrefillProfile(isl=p["isl"], ttft_ms=p["ttftMs"], thpt_per_gpu=p["thptPerGpu"])
        decode = DecodeProfile(kv_usage=d["kvUsage"], context=d["context"], itl_ms=d["itlMs"],
                               thpt_per_gpu=d["thptPerGpu"], max_kv_tokens=d["maxKvTokens"])
    except KeyError as exc:
        raise ValueError(f"sla: missing field {exc.args[0]!r} (profile.prefill: isl, ttftMs, thptPerGpu; "
                         "profile.decode: kvUsage, context, itlMs, thptPerGpu, maxKvTokens)") from exc
    targets = SlaTargets(
        ttft_ms=float(raw.get("ttftMs", 500)), itl_ms=float(raw.get("itlMs", 50)),
        interval_s=float(raw.get("intervalSeconds", 60)),
        gpus_per_prefill=int(raw.get("gpusPerPrefill", 1)), gpus_per_decode=int(raw.get("gpusPerDecode", 1)),
        min_endpoint=int(raw.get("minEndpoint", 1)),
        max_gpu_budget=int(raw["maxGpuBudget"]) if raw.get("maxGpuBudget") is not None else None)
    predictor = raw.get("predictor", "kalman")
    if predictor not in ("constant", "moving_average", "kalman"):
        raise ValueError(f"sla.predictor must be constant, moving_average or kalman; got {predictor!r}")
    return SlaMode(targets, prefill, decode, str(raw.get("prefillRole", "prefill")),
                   str(raw.get("decodeRole", "decode")), predictor)


def observation_from_rates(interval_s: float, requests_per_s: float | None, prompt_tokens_per_s: float | None,
                           generation_tokens_per_s: float | None, ttft_s: float | None,
                           itl_s: float | None) -> Observation | None:
    """One interval's observation from engine counters read as rates (and mean latencies).
    None while there is no traffic to learn from."""
    if not requests_per_s or requests_per_s <= 0:
        return None
    isl = (prompt_tokens_per_s or 0.0) / requests_per_s
    osl = (generation_tokens_per_s or 0.0) / requests_per_s
    duration = (ttft_s or 0.0) + osl * (itl_s or 0.0)
    return Observation(num_requests=requests_per_s * interval_s, isl=isl, osl=osl,
                       ttft_ms=ttft_s * 1000 if ttft_s else None, itl_ms=itl_s * 1000 if itl_s else None,
                       request_duration_s=duration or None)
