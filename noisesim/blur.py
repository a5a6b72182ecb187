"""Blur kernels for paired-data synthesis (docs/datasets.md).

Blur acts on **linear camera RGB before mosaic and noise**: the optics blur the scene, the sensor then adds
noise that is white per pixel. Kernels are (k, k) float32, k odd, non-negative, normalized to sum 1, and
applied as a true convolution (kernel flipped for OpenCV's correlation) with a reflected border.

Kinds
-----
* ``gaussian``     isotropic Gaussian, parameter σ [px]
* ``anisotropic``  Gaussian with σ_x, σ_y [px] drawn from the range and a uniform orientation θ
* ``defocus``      uniform disk (pillbox) of radius r [px], anti-aliased edge
* ``motion``       random camera-shake trajectory of length L [px] (random walk with inertia, as in
                   Boracchi & Foi, "Modeling the Performance of Image Restoration From Motion Blur",
                   IEEE TIP 2012), rasterized sub-pixel
* ``file``         a user kernel from ``.npy``, ``.png`` or ``.tif(f)``

A :class:`BlurSpec` says which kinds to draw from, their parameter ranges, and the probability of no blur;
:func:`sample_kernel` draws one kernel (or ``None``) from it with the caller's ``rng``.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import InputFileError, ParameterError, ShapeError
from .rng import as_generator

__all__ = [
    "BLUR_KINDS",
    "BlurSpec",
    "parse_blur_spec",
    "gaussian_kernel",
    "anisotropic_gaussian_kernel",
    "defocus_kernel",
    "motion_kernel",
    "load_kernel",
    "normalize_kernel",
    "pad_kernel",
    "default_kernel_size",
    "sample_kernel",
    "apply_blur",
]

BLUR_KINDS = ("gaussian", "anisotropic", "defocus", "motion")

# Largest kernel side we build from a parameter; bigger blurs are not what this tool is for and would
# make every patch cost O(k²) per pixel.
MAX_KERNEL_SIZE = 63
# Every point of a path of length L lies within L/2 of the path's centroid, so a motion kernel's side is at
# most 2·ceil(L/2 + 1) + 1 ≤ L + 5 px; this keeps it within MAX_KERNEL_SIZE.
MAX_MOTION_LENGTH = MAX_KERNEL_SIZE - 6


def _odd(n: float) -> int:
    n = int(math.ceil(n))
    return n if n % 2 else n + 1


def normalize_kernel(kernel, *, what: str = "kernel") -> np.ndarray:
    """Validate a 2-D kernel and return it float32, odd-sized (zero-padded), summing to 1.

    Raises :class:`ShapeError` for non-2-D input and :class:`ParameterError` for negative, non-finite or
    all-zero kernels.

    Parameters
    ----------
    kernel : (h, w) array_like
        Non-negative weights.
    what : str
        What the kernel is, for error messages (e.g. its file).

    Returns
    -------
    (k, k) ndarray of float32
        k = the larger of h, w rounded up to odd; sum 1.
    """
    k = np.asarray(kernel, dtype=np.float64)
    if k.ndim != 2 or k.shape[0] == 0 or k.shape[1] == 0:
        raise ShapeError(f"{what} must be a non-empty 2-D array (k, k). Got shape {k.shape}.")
    if not np.all(np.isfinite(k)):
        raise ParameterError(f"{what} contains non-finite values")
    if np.any(k < 0):
        raise ParameterError(f"{what} has negative entries (min {k.min():.3g}); a blur kernel must be >= 0")
    s = k.sum()
    if s <= 0:
        raise ParameterError(f"{what} sums to 0; a blur kernel needs positive weight")
    size = _odd(max(k.shape))
    k = pad_kernel(k, size)
    return (k / k.sum()).astype(np.float32)


def pad_kernel(kernel, size: int) -> np.ndarray:
    """Zero-pad a kernel to (size, size), centred (an odd kernel stays centred on its middle pixel).

    Used to store kernels of different sizes in one (M, k, k) array. Raises :class:`ShapeError` if the
    kernel is larger than ``size``.

    Parameters
    ----------
    kernel : (k, k) ndarray
        An odd-sized kernel.
    size : int
        Target side [px], ≥ k.

    Returns
    -------
    (size, size) ndarray
        Same dtype; the added border is zero.
    """
    k = np.asarray(kernel)
    h, w = k.shape
    if h > size or w > size:
        raise ShapeError(f"kernel of shape {k.shape} does not fit in ({size}, {size})")
    out = np.zeros((size, size), dtype=k.dtype)
    y0, x0 = (size - h) // 2, (size - w) // 2
    out[y0 : y0 + h, x0 : x0 + w] = k
    return out


# --------------------------------------------------------------------------------------------------
# Kernels
# --------------------------------------------------------------------------------------------------
def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    r = (size - 1) / 2.0
    ax = np.arange(size, dtype=np.float64) - r
    return np.meshgrid(ax, ax, indexing="xy")  # X varies along columns, Y along rows


def default_kernel_size(kind: str, value: float) -> int:
    """Side [px] of the kernel :func:`sample_kernel` builds for ``kind`` at parameter ``value`` (an upper
    bound for ``motion``, whose side depends on the drawn path).

    Parameters
    ----------
    kind : {"gaussian", "anisotropic", "defocus", "motion"}
        Blur kind.
    value : float
        Its parameter: σ [px], the larger σ [px], the radius [px] or the path length [px].

    Returns
    -------
    int
        Odd kernel side [px].
    """
    if kind in ("gaussian", "anisotropic"):
        return _odd(6 * value + 1)
    if kind == "defocus":
        return _odd(2 * math.ceil(value) + 1)
    if kind == "motion":
        return _odd(2 * math.ceil(value / 2 + 1) + 1)
    raise ParameterError(f"unknown blur kind {kind!r}; valid kinds: {', '.join(BLUR_KINDS)}")


def _check_size(size, default: int, what: str) -> int:
    if size is None:
        size = default
    if not isinstance(size, (int, np.integer)) or size < 1 or size % 2 == 0:
        raise ParameterError(f"{what} kernel size must be a positive odd integer, got {size!r}")
    if size > MAX_KERNEL_SIZE:
        raise ParameterError(
            f"{what} kernel size {size} px exceeds the maximum {MAX_KERNEL_SIZE} px (blur parameter too large)"
        )
    return int(size)


def gaussian_kernel(sigma: float, size: int | None = None) -> np.ndarray:
    """Isotropic Gaussian ``exp(−(x² + y²) / 2σ²)`` sampled on a (size, size) grid, sum 1.

    Parameters
    ----------
    sigma : float
        Standard deviation [px], > 0.
    size : odd int, optional
        Kernel side; default ``2·ceil(3σ) + 1``.

    Returns
    -------
    (size, size) ndarray of float32
        The kernel, summing to 1.
    """
    if not np.isfinite(sigma) or sigma <= 0:
        raise ParameterError(f"Gaussian blur sigma must be > 0 px, got {sigma!r}")
    return anisotropic_gaussian_kernel(sigma, sigma, 0.0, size)


def anisotropic_gaussian_kernel(sigma_x: float, sigma_y: float, theta: float, size: int | None = None) -> np.ndarray:
    """Anisotropic Gaussian with principal σ's ``sigma_x``, ``sigma_y`` [px] rotated by ``theta`` [rad].

    The covariance is ``R(θ) diag(σx², σy²) R(θ)ᵀ``; θ is measured from the image x axis (columns) towards
    +y (rows, i.e. downwards on screen). Shape ``(size, size)``, default size ``2·ceil(3·max σ) + 1``.

    Parameters
    ----------
    sigma_x, sigma_y : float
        Standard deviations along the principal axes [px], > 0.
    theta : float
        Rotation of the first axis from the image x axis [rad].
    size : odd int, optional
        Kernel side [px].

    Returns
    -------
    (size, size) ndarray of float32
        The kernel, summing to 1.
    """
    for name, s in (("sigma_x", sigma_x), ("sigma_y", sigma_y)):
        if not np.isfinite(s) or s <= 0:
            raise ParameterError(f"anisotropic blur {name} must be > 0 px, got {s!r}")
    size = _check_size(size, _odd(6 * max(sigma_x, sigma_y) + 1), "Gaussian")
    c, s = math.cos(theta), math.sin(theta)
    rot = np.array([[c, -s], [s, c]])
    cov = rot @ np.diag([sigma_x**2, sigma_y**2]) @ rot.T
    inv = np.linalg.inv(cov)
    X, Y = _grid(size)
    q = inv[0, 0] * X * X + 2 * inv[0, 1] * X * Y + inv[1, 1] * Y * Y
    k = np.exp(-0.5 * q)
    return (k / k.sum()).astype(np.float32)


def defocus_kernel(radius: float, size: int | None = None, *, supersample: int = 8) -> np.ndarray:
    """Uniform disk (pillbox) of ``radius`` [px], the geometric-optics defocus PSF, sum 1.

    Edge pixels get their covered area fraction (``supersample``² sub-samples per pixel), so the kernel
    varies smoothly with the radius. Default size ``2·ceil(radius) + 1``.

    Parameters
    ----------
    radius : float
        Disk radius [px], > 0.
    size : odd int, optional
        Kernel side [px].
    supersample : int
        Sub-samples per pixel side for the edge coverage.

    Returns
    -------
    (size, size) ndarray of float32
        The kernel, summing to 1.
    """
    if not np.isfinite(radius) or radius <= 0:
        raise ParameterError(f"defocus radius must be > 0 px, got {radius!r}")
    size = _check_size(size, _odd(2 * math.ceil(radius) + 1), "defocus")
    n = supersample
    X, Y = _grid(size * n)
    inside = ((X / n) ** 2 + (Y / n) ** 2 <= radius * radius).astype(np.float64)
    k = inside.reshape(size, n, size, n).sum(axis=(1, 3))
    if k.sum() == 0:  # radius far below a pixel: a delta
        k[size // 2, size // 2] = 1.0
    return (k / k.sum()).astype(np.float32)


def motion_kernel(
    rng,
    length: float,
    *,
    size: int | None = None,
    inertia: float = 0.7,
    shake: float = 0.3,
    steps_per_px: int = 4,
) -> np.ndarray:
    """Random camera-shake PSF: a trajectory of total path ``length`` [px] rasterized into a kernel.

    The trajectory is a 2-D random walk with inertia (velocity ``v ← inertia·v + shake·ξ``, ξ ~ N(0, I),
    renormalized to a constant step), in the spirit of Boracchi & Foi (IEEE TIP 2012). Steps are a
    fraction ``1/steps_per_px`` of a pixel and splatted bilinearly, so the kernel is a connected curve;
    its centroid is moved to the kernel centre (blur does not shift the image). Sum 1.

    Parameters
    ----------
    rng : int, SeedSequence, Generator or None
    length : float
        Path length [px], ≥ 1.
    size : odd int, optional
        Kernel side; default just large enough for the trajectory.

    Returns
    -------
    (k, k) ndarray of float32
        The kernel (k odd), summing to 1.
    """
    if not np.isfinite(length) or length < 1:
        raise ParameterError(f"motion blur length must be >= 1 px, got {length!r}")
    if length > MAX_MOTION_LENGTH:
        raise ParameterError(f"motion blur length {length} exceeds {MAX_MOTION_LENGTH} px")
    rng = as_generator(rng)
    n = max(2, int(math.ceil(length * steps_per_px)))
    step = length / n
    angle = rng.uniform(0, 2 * math.pi)
    v = np.array([math.cos(angle), math.sin(angle)])
    xi = rng.standard_normal((n, 2))
    pts = np.empty((n + 1, 2))
    pts[0] = 0.0
    for i in range(n):
        v = inertia * v + shake * xi[i]
        nv = math.hypot(v[0], v[1])
        v = v / nv if nv > 0 else np.array([1.0, 0.0])
        pts[i + 1] = pts[i] + step * v
    pts -= pts.mean(axis=0)
    extent = float(np.abs(pts).max())
    size = _check_size(size, _odd(2 * math.ceil(extent + 1) + 1), "motion")
    c = (size - 1) / 2.0
    k = np.zeros((size, size), dtype=np.float64)
    xs, ys = pts[:, 0] + c, pts[:, 1] + c
    x0, y0 = np.floor(xs).astype(int), np.floor(ys).astype(int)
    fx, fy = xs - x0, ys - y0
    for dy, dx, w in ((0, 0, (1 - fy) * (1 - fx)), (0, 1, (1 - fy) * fx), (1, 0, fy * (1 - fx)), (1, 1, fy * fx)):
        yy, xx = y0 + dy, x0 + dx
        ok = (yy >= 0) & (yy < size) & (xx >= 0) & (xx < size)
        np.add.at(k, (yy[ok], xx[ok]), w[ok])
    return (k / k.sum()).astype(np.float32)


def load_kernel(path) -> np.ndarray:
    """Read a user kernel from ``.npy``, ``.png`` or ``.tif``/``.tiff`` and normalize it (sum 1, odd size).

    Images are read as single-channel intensity (8 or 16 bit, or float TIFF); a colour image is averaged
    over its channels. Errors name the file.

    Parameters
    ----------
    path : str or Path
        A ``.npy``, ``.png``, ``.tif`` or ``.tiff`` file.

    Returns
    -------
    (k, k) ndarray of float32
        The kernel, k odd, summing to 1.
    """
    path = Path(path)
    if not path.is_file():
        raise InputFileError(f"blur kernel file {path} does not exist")
    ext = path.suffix.lower()
    try:
        if ext == ".npy":
            k = np.load(path, allow_pickle=False)
        elif ext in (".png", ".tif", ".tiff"):
            import cv2

            k = cv2.imread(str(path), cv2.IMREAD_UNCHANGED | cv2.IMREAD_ANYDEPTH)
            if k is None:
                raise InputFileError(f"blur kernel file {path}: OpenCV cannot read it as an image")
            if k.ndim == 3:
                k = k[..., :3].astype(np.float64).mean(axis=-1)
        else:
            raise InputFileError(f"blur kernel file {path}: unsupported extension {ext!r} (use .npy, .png, .tif)")
    except InputFileError:
        raise
    except (OSError, ValueError) as exc:
        raise InputFileError(f"blur kernel file {path}: cannot read it ({exc})") from exc
    try:
        return normalize_kernel(k, what=f"blur kernel in {path}")
    except (ShapeError, ParameterError) as exc:
        raise InputFileError(str(exc)) from exc


# --------------------------------------------------------------------------------------------------
# Spec and sampling
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class BlurSpec:
    """What blur to draw for each sample.

    Attributes
    ----------
    kinds : tuple of (kind, low, high)
        Kinds of :data:`BLUR_KINDS` with the uniform range of their parameter [px]: σ for ``gaussian`` and
        ``anisotropic`` (both σ's drawn independently from it), radius for ``defocus``, path length for
        ``motion``.
    kernel_files : tuple of str
        User kernel files; each counts as one more choice.
    p_none : float
        Probability that a sample gets no blur at all, in [0, 1].

    When a sample is blurred, the choice among the kinds and files is uniform.
    """

    kinds: tuple = ()
    kernel_files: tuple = ()
    p_none: float = 0.0
    _file_kernels: tuple = field(default=(), repr=False, compare=False)

    def __post_init__(self) -> None:
        kinds = []
        for entry in self.kinds:
            try:
                kind, lo, hi = entry
            except (TypeError, ValueError):
                raise ParameterError(f"blur kind entry must be (kind, low, high), got {entry!r}") from None
            if kind not in BLUR_KINDS:
                raise ParameterError(f"unknown blur kind {kind!r}; valid kinds: {', '.join(BLUR_KINDS)}, file")
            lo, hi = float(lo), float(hi)
            if not (np.isfinite(lo) and np.isfinite(hi) and 0 < lo <= hi):
                raise ParameterError(f"blur {kind} range must satisfy 0 < low <= high, got {lo}-{hi}")
            if kind == "motion" and lo < 1:
                raise ParameterError(f"blur motion length must be >= 1 px, got {lo}")
            if kind == "motion" and hi > MAX_MOTION_LENGTH:
                raise ParameterError(f"blur motion length {hi:g} px exceeds the maximum {MAX_MOTION_LENGTH} px")
            if default_kernel_size(kind, hi) > MAX_KERNEL_SIZE:
                raise ParameterError(
                    f"blur {kind} parameter {hi:g} px needs a {default_kernel_size(kind, hi)} px kernel, more than "
                    f"the maximum {MAX_KERNEL_SIZE} px"
                )
            kinds.append((kind, lo, hi))
        object.__setattr__(self, "kinds", tuple(kinds))
        files = tuple(str(f) for f in self.kernel_files)
        object.__setattr__(self, "kernel_files", files)
        if not (0.0 <= float(self.p_none) <= 1.0):
            raise ParameterError(f"blur probability of no blur must lie in [0, 1], got {self.p_none}")
        object.__setattr__(self, "p_none", float(self.p_none))
        if not kinds and not files and self.p_none < 1.0:
            raise ParameterError("blur spec has no kinds and no kernel files")
        # Load user kernels once, so a bad file fails at parse time and sampling does no I/O.
        object.__setattr__(self, "_file_kernels", tuple(load_kernel(f) for f in files))

    @property
    def max_kernel_size(self) -> int:
        """Largest kernel side [px] :func:`sample_kernel` can return for this spec (1 without kinds or files),
        e.g. the padded size of a dataset's ``/blur_kernels``."""
        sizes = [1] + [default_kernel_size(k, hi) for k, _lo, hi in self.kinds]
        sizes += [max(k.shape) for k in self._file_kernels]
        return max(sizes)

    @property
    def n_choices(self) -> int:
        """Number of kernel kinds a draw chooses from: procedural kinds plus kernel files."""
        return len(self.kinds) + len(self.kernel_files)

    def to_string(self) -> str:
        """The ``--blur`` text that parses back to this spec.

        Returns
        -------
        str
            E.g. ``"gaussian:0.5-2,p=0.5"``; :func:`parse_blur_spec` of it equals this spec.
        """
        parts = [f"{k}:{lo:g}-{hi:g}" for k, lo, hi in self.kinds]
        parts += [f"file:{f}" for f in self.kernel_files]
        parts.append(f"none={self.p_none:g}")
        return ",".join(parts)


_RANGE = re.compile(r"^\s*([0-9.eE+]+)\s*(?:-\s*([0-9.eE+]+))?\s*$")


def parse_blur_spec(text: str) -> BlurSpec:
    """Parse the CLI ``--blur`` text into a :class:`BlurSpec`.

    Comma-separated items:

    * ``KIND:LOW-HIGH`` or ``KIND:VALUE`` for KIND in gaussian, anisotropic, defocus, motion;
    * ``file:PATH`` a kernel file (.npy/.png/.tif);
    * ``p=P`` the probability that a sample **is** blurred (default 1), or ``none=Q`` the probability that
      it is not (Q = 1 − P); give at most one of them.

    >>> parse_blur_spec("gaussian:0.5-2.0,motion:5-15,p=0.5").p_none
    0.5

    Raises :class:`ParameterError` naming the offending item.

    Parameters
    ----------
    text : str
        The ``--blur`` value, e.g. ``"gaussian:0.5-2.0,motion:5-15,p=0.5"``.

    Returns
    -------
    BlurSpec
        Kinds with their parameter ranges [px] and the probability of no blur.
    """
    if not isinstance(text, str) or not text.strip():
        raise ParameterError("empty blur spec; expected e.g. 'gaussian:0.5-2,defocus:1-4,p=0.5'")
    kinds, files = [], []
    p_none = None
    for raw_item in text.split(","):
        item = raw_item.strip()
        if not item:
            continue
        if "=" in item and ":" not in item.split("=", 1)[0]:
            key, _, val = item.partition("=")
            key = key.strip().lower()
            if key not in ("p", "none"):
                raise ParameterError(f"blur spec item {item!r}: unknown option {key!r} (expected p=P or none=Q)")
            if p_none is not None:
                raise ParameterError(f"blur spec item {item!r}: the blur probability is given twice")
            try:
                v = float(val)
            except ValueError:
                raise ParameterError(f"blur spec item {item!r}: {val!r} is not a number") from None
            if not 0.0 <= v <= 1.0:
                raise ParameterError(f"blur spec item {item!r}: probability must lie in [0, 1]")
            p_none = 1.0 - v if key == "p" else v
            continue
        kind, sep, arg = item.partition(":")
        kind = kind.strip().lower()
        if not sep:
            raise ParameterError(f"blur spec item {item!r}: expected KIND:LOW-HIGH, file:PATH or p=P")
        if kind == "file":
            if not arg.strip():
                raise ParameterError(f"blur spec item {item!r}: missing file path")
            files.append(arg.strip())
            continue
        if kind not in BLUR_KINDS:
            raise ParameterError(f"blur spec item {item!r}: unknown kind {kind!r}; valid: {', '.join(BLUR_KINDS)}, file")
        m = _RANGE.match(arg)
        if not m:
            raise ParameterError(f"blur spec item {item!r}: expected a range LOW-HIGH in px, e.g. {kind}:1-3")
        try:
            lo = float(m.group(1))
            hi = float(m.group(2)) if m.group(2) is not None else lo
        except ValueError:
            raise ParameterError(f"blur spec item {item!r}: {arg!r} is not a numeric range") from None
        if not (lo > 0 and hi >= lo):
            raise ParameterError(f"blur spec item {item!r}: range must satisfy 0 < LOW <= HIGH")
        kinds.append((kind, lo, hi))
    return BlurSpec(kinds=tuple(kinds), kernel_files=tuple(files), p_none=0.0 if p_none is None else p_none)


def sample_kernel(spec: BlurSpec | None, rng) -> np.ndarray | None:
    """Draw one kernel from ``spec``: ``None`` (no blur) with probability ``spec.p_none``, else a kernel of a
    uniformly chosen kind with its parameter uniform in the kind's range. (k, k) float32, sum 1.

    The draws always consume the same number of values from ``rng`` for a given outcome, so the stream
    is reproducible from the seed.

    Parameters
    ----------
    spec : BlurSpec or None
        What to draw from; None: no blur.
    rng : int, SeedSequence, Generator or None
        Source of the draws.

    Returns
    -------
    (k, k) ndarray of float32 or None
        The kernel, or None when this sample is not blurred.
    """
    if spec is None:
        return None
    rng = as_generator(rng)
    if spec.p_none >= 1.0 or (spec.p_none > 0.0 and rng.random() < spec.p_none):
        return None
    i = int(rng.integers(spec.n_choices))
    if i >= len(spec.kinds):
        return spec._file_kernels[i - len(spec.kinds)].copy()
    kind, lo, hi = spec.kinds[i]
    if kind == "gaussian":
        return gaussian_kernel(rng.uniform(lo, hi))
    if kind == "anisotropic":
        sx, sy = rng.uniform(lo, hi, size=2)
        return anisotropic_gaussian_kernel(sx, sy, rng.uniform(0.0, math.pi))
    if kind == "defocus":
        return defocus_kernel(rng.uniform(lo, hi))
    return motion_kernel(rng, rng.uniform(lo, hi))


def apply_blur(rgb, kernel) -> np.ndarray:
    """Convolve each channel of a linear image with ``kernel`` (OpenCV, reflected border ``BORDER_REFLECT_101``).

    Shape: ``(H, W, 3) -> (H, W, 3)`` or ``(H, W) -> (H, W)``, float32. ``kernel=None`` returns the input
    unchanged (as float32). The kernel is flipped so the operation is a convolution, not a correlation
    (it matters for asymmetric motion kernels).

    Parameters
    ----------
    rgb : (H, W, 3) or (H, W) array_like
        Linear (not gamma-encoded) image, any unit.
    kernel : (k, k) ndarray or None
        Convolution kernel, summing to 1.

    Returns
    -------
    ndarray of float32
        The blurred image, same shape and unit as ``rgb``.
    """
    import cv2

    img = np.asarray(rgb, dtype=np.float32)
    if kernel is None:
        return img
    if img.ndim not in (2, 3):
        raise ShapeError(f"image to blur must have shape (H, W) or (H, W, C). Got {img.shape}.")
    k = np.asarray(kernel, dtype=np.float32)
    if k.ndim != 2 or k.shape[0] % 2 == 0 or k.shape[1] % 2 == 0:
        k = normalize_kernel(k)
    k = np.ascontiguousarray(k[::-1, ::-1])
    terms = _separable_terms(k)
    if terms is None:
        out = cv2.filter2D(img, cv2.CV_32F, k, borderType=cv2.BORDER_REFLECT_101)
    else:
        out = None
        for col, row in terms:
            t = cv2.sepFilter2D(img, cv2.CV_32F, row, col, borderType=cv2.BORDER_REFLECT_101)
            out = t if out is None else out + t
    return out.reshape(img.shape)


def _separable_terms(k: np.ndarray):
    """Exact low-rank split of a kernel into separable (column, row) 1-D pairs, or None if not worth it.

    ``k = Σ s_i u_i v_iᵀ`` (SVD); components are kept until the rest is below 1e-7 of the kernel's norm
    (below float32 resolution). A Gaussian is rank 1; a rotated anisotropic Gaussian needs a few terms.
    Worth it while ``rank · 2k`` taps stay well below the ``k²`` of a direct 2-D filter (OpenCV switches
    to a DFT above 11×11, which is slower than a few separable passes at patch sizes).
    """
    n = k.shape[0]
    if n < 5:
        return None
    u, sv, vt = np.linalg.svd(k.astype(np.float64))
    total = float(np.sqrt((sv**2).sum()))
    tail = np.sqrt(np.cumsum((sv**2)[::-1])[::-1])  # tail[r] = norm of the components r, r+1, …
    rank = next((r for r in range(1, len(sv)) if tail[r] <= 1e-7 * total), len(sv))
    if rank > max(1, n // 4):
        return None
    return [
        (np.ascontiguousarray(u[:, i] * sv[i], dtype=np.float32), np.ascontiguousarray(vt[i], dtype=np.float32))
        for i in range(rank)
    ]
