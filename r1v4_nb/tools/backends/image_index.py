"""The offline image-search backend: find the pages whose pictures match a query picture.

Three signals. A perceptual hash (DCT of a 32x32 grey thumbnail, 64 bits) finds
near-duplicates: resized, recompressed or recoloured copies. ORB local features
find crops and rotations: query descriptors are looked up in locality-sensitive
hash tables over all indexed descriptors (random samples of the most balanced
descriptor bits), the images with most votes are checked geometrically (a
RANSAC similarity transform between matched keypoints), and a photometric check
(normalised cross-correlation of the query warped onto the indexed picture)
rejects pictures that merely share some corner patterns. `search(...,
exhaustive=True)` skips the hash tables and checks every image: the brute-force
baseline the benchmark compares against.
"""

from __future__ import annotations

import hashlib
import io
import sqlite3
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import UsageError
from .sqlitefile import building

SIDE = 320  # indexed pictures are scaled so their longer side is SIDE
INDEX_FEATURES = 500
QUERY_FEATURES = 800
TABLES = 8
MAX_VOTE_DISTANCE = 56
CANDIDATES = 20
MIN_INLIERS = 12
MIN_SPREAD = 10.0  # pixels: standard deviation of the inliers' positions in the indexed picture
MIN_CORRELATION = 0.8
PHASH_MAX_DISTANCE = 10
SMALL = 4  # the photometric check works at 1/SMALL of the index scale
MIN_OVERLAP = 150  # pixels of overlap (at 1/SMALL) that the check needs
THUMB = 128
_POP8 = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)


@dataclass
class Features:
    phash: int
    points: np.ndarray  # (n, 2) float32, in the pixels of `grey`
    descriptors: np.ndarray  # (n, 32) uint8
    grey: np.ndarray  # the picture in grey at the scale the features were taken


def _grey(image: Any, side: int | None = SIDE, max_side: int | None = None) -> np.ndarray:
    """The image in grey, scaled so its longer side is `side` (or, with side=None, at most `max_side`)."""
    from PIL import Image as PILImage

    im = image if isinstance(image, PILImage.Image) else PILImage.open(image)
    im = im.convert("L")
    scale = side / max(im.size) if side else min(1.0, (max_side or max(im.size)) / max(im.size))
    if scale != 1.0:
        size = (max(1, round(im.width * scale)), max(1, round(im.height * scale)))
        im = im.resize(size, PILImage.Resampling.BILINEAR)
    return np.asarray(im, dtype=np.uint8)


def phash(grey: np.ndarray) -> int:
    """64-bit DCT hash: the signs of the low frequencies against their median."""
    import cv2

    small = cv2.resize(grey, (32, 32), interpolation=cv2.INTER_AREA).astype(np.float32)
    low = cv2.dct(small)[:8, :8].flatten()
    bits = low > np.median(low[1:])
    return int(sum(1 << i for i, b in enumerate(bits) if b))


def _orb(grey: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    import cv2

    orb = cv2.ORB_create(nfeatures=n, fastThreshold=10, edgeThreshold=15, patchSize=15)
    kps, desc = orb.detectAndCompute(grey, None)
    if desc is None:
        return np.zeros((0, 2), np.float32), np.zeros((0, 32), np.uint8)
    return np.array([k.pt for k in kps], dtype=np.float32), desc.astype(np.uint8)


def features(image: Any, n: int = INDEX_FEATURES) -> Features:
    """Hash and ORB features of a picture to index (a PIL image or a file), at the index's scale."""
    grey = _grey(image)
    points, desc = _orb(grey, n)
    return Features(phash(grey), points, desc, grey)


def query_features(image: Any, n: int = QUERY_FEATURES) -> Features:
    """Features of a query at its own scale and at half of it, so a zoomed-in crop still meets the index's scale."""
    import cv2

    grey = _grey(image, side=None, max_side=2 * SIDE)
    points, desc = _orb(grey, n)
    if min(grey.shape) >= 120:
        half = cv2.resize(grey, (grey.shape[1] // 2, grey.shape[0] // 2), interpolation=cv2.INTER_AREA)
        p2, d2 = _orb(half, n // 2)
        points, desc = np.concatenate([points, p2 * 2.0]), np.concatenate([desc, d2])
    return Features(phash(grey), points, desc, grey)


def small_grey(grey: np.ndarray) -> np.ndarray:
    import cv2

    return cv2.resize(grey, (max(1, grey.shape[1] // SMALL), max(1, grey.shape[0] // SMALL)),
                      interpolation=cv2.INTER_AREA)


def correlation(query: np.ndarray, matrix: np.ndarray, target: np.ndarray) -> float:
    """Normalised cross-correlation of the query warped onto `target` (an indexed picture at 1/SMALL).

    `matrix` maps query pixels to index pixels. The correlation ignores brightness and contrast, so a
    recoloured copy still scores high, while pictures that only share a few corner patterns score low.
    """
    import cv2

    f = min(1.0, float(np.hypot(matrix[0, 0], matrix[1, 0])) / SMALL)
    q = cv2.resize(query, (max(1, round(query.shape[1] * f)), max(1, round(query.shape[0] * f))),
                   interpolation=cv2.INTER_AREA).astype(np.float32)
    m = np.array(matrix, dtype=np.float64) / SMALL
    m[:, :2] /= f
    h, w = target.shape
    warped = cv2.warpAffine(q, m, (w, h), flags=cv2.INTER_LINEAR, borderValue=0)
    mask = cv2.warpAffine(np.ones_like(q), m, (w, h), flags=cv2.INTER_NEAREST, borderValue=0)
    mask = cv2.erode(mask.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    if mask.sum() < MIN_OVERLAP:
        return 0.0
    a, b = warped[mask], target[mask].astype(np.float32)
    a, b = a - a.mean(), b - b.mean()
    denom = float(np.sqrt((a * a).sum() * (b * b).sum()))
    return float((a * b).sum() / denom) if denom > 0 else 0.0


def hamming64(a: int, b: np.ndarray) -> np.ndarray:
    x = np.bitwise_xor(b, np.uint64(a))
    return _POP8[x.view(np.uint8).reshape(-1, 8)].sum(axis=1)


def _thumbnail(path: Path) -> bytes:
    from PIL import Image as PILImage

    with PILImage.open(path) as im:
        im = im.convert("RGB")
        im.thumbnail((THUMB, THUMB))
        buf = io.BytesIO()
        im.save(buf, format="PNG")
        return buf.getvalue()


def _lsh_bits(desc: np.ndarray, seed: int = 7) -> np.ndarray:
    """Bit positions per table: drawn from the most balanced half of the bits, more bits for bigger indexes."""
    means = np.zeros(256)
    if len(desc):
        for j in range(8):
            means[j::8] = ((desc >> (7 - j)) & 1).mean(axis=0)
    balanced = np.argsort(np.abs(means - 0.5), kind="stable")[:128]
    width = int(np.clip(round(np.log2(max(len(desc), 2))) + 2, 14, 28))
    rng = np.random.default_rng(seed)
    return np.array([rng.choice(balanced, size=width, replace=False) for _ in range(TABLES)])


def _keys(desc: np.ndarray, bits: np.ndarray) -> np.ndarray:
    """(TABLES, n) keys: the chosen descriptor bits of each table packed into an integer."""
    out = np.zeros((len(bits), len(desc)), dtype=np.uint32)
    for t, positions in enumerate(bits):
        for j, pos in enumerate(positions):
            out[t] |= ((desc[:, pos // 8] >> (7 - pos % 8)) & 1).astype(np.uint32) << j
    return out


class ImageIndex:
    """A built image index (SQLite file), loaded into memory for searching."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if not self.path.is_file():
            raise UsageError(f"no image index at {self.path}; build one with 'r1v4-nb corpus images DIR'")
        conn = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True)
        try:
            self.id = conn.execute("SELECT value FROM meta WHERE key = 'id'").fetchone()[0]
            rows = conn.execute("SELECT id, url, title, phash, points, descriptors, small, small_w "
                                "FROM images ORDER BY id").fetchall()
        except sqlite3.DatabaseError as exc:
            raise UsageError(f"{self.path} is not an r1v4-nb image index ({exc}); rebuild it") from exc
        finally:
            conn.close()
        self.ids = [r[0] for r in rows]
        self.urls = [r[1] for r in rows]
        self.titles = [r[2] for r in rows]
        self.phashes = np.array([int(r[3]) & (2**64 - 1) for r in rows], dtype=np.uint64)
        self.points = [np.frombuffer(r[4], np.float32).reshape(-1, 2) for r in rows]
        self.descriptors = [np.frombuffer(r[5], np.uint8).reshape(-1, 32) for r in rows]
        self.small = [np.frombuffer(r[6], np.uint8).reshape(-1, r[7]) for r in rows]
        self.owner = np.repeat(np.arange(len(rows), dtype=np.int32), [len(d) for d in self.descriptors])
        self.all_desc = np.concatenate(self.descriptors) if rows else np.zeros((0, 32), np.uint8)
        self.bits = _lsh_bits(self.all_desc)
        self.max_bucket = max(64, len(self.all_desc) // 1000)
        keys = _keys(self.all_desc, self.bits)
        self.order = np.argsort(keys, axis=1, kind="stable")
        self.sorted_keys = np.take_along_axis(keys, self.order, axis=1)

    def __len__(self) -> int:
        return len(self.ids)

    @classmethod
    def build(cls, entries: Iterable[tuple[Path, str, str]], path: str | Path,
              progress: Callable[[int], None] | None = None) -> ImageIndex:
        """Index (image file, page url, page title) entries into a new file at `path`."""
        path = Path(path)
        schema = ("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT);"
                  "CREATE TABLE images (id INTEGER PRIMARY KEY, file TEXT, url TEXT, title TEXT, phash INTEGER,"
                  " points BLOB, descriptors BLOB, small BLOB, small_w INTEGER, thumbnail BLOB);")
        digest = hashlib.sha256()
        with building(path, schema) as conn:
            for n, (file, url, title) in enumerate(entries, 1):
                file = Path(file)
                try:
                    f = features(file)
                except (OSError, ValueError) as exc:
                    raise UsageError(f"cannot index {file}: {exc}") from exc
                signed = f.phash - 2**64 if f.phash >= 2**63 else f.phash  # SQLite integers are signed 64-bit
                small = small_grey(f.grey)
                digest.update(f"{url}\0{title}\0{f.phash}\0".encode() + f.descriptors.tobytes())
                conn.execute("INSERT INTO images VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                             (n, str(file), url, title, signed, f.points.tobytes(), f.descriptors.tobytes(),
                              small.tobytes(), small.shape[1], _thumbnail(file)))
                if progress and n % 200 == 0:
                    progress(n)
            conn.execute("INSERT INTO meta VALUES ('id', ?)", (digest.hexdigest()[:16],))
        return cls(path)

    def thumbnail(self, i: int) -> bytes:
        """The PNG thumbnail of the i-th indexed picture."""
        conn = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True)
        try:
            return conn.execute("SELECT thumbnail FROM images WHERE id = ?", (self.ids[i],)).fetchone()[0]
        finally:
            conn.close()

    def _votes(self, q: Features) -> list[int]:
        """Images whose descriptors collide with the query's in the hash tables, most votes first."""
        if not len(q.descriptors) or not len(self.all_desc):
            return []
        qkeys = _keys(q.descriptors, self.bits)
        qi_all, di_all = [], []
        for t in range(len(self.bits)):
            lo = np.searchsorted(self.sorted_keys[t], qkeys[t], side="left")
            hi = np.searchsorted(self.sorted_keys[t], qkeys[t], side="right")
            counts = hi - lo
            counts[counts > self.max_bucket] = 0  # features common to many pictures say little
            total = int(counts.sum())
            if not total:
                continue
            qi_all.append(np.repeat(np.arange(len(counts)), counts))
            offsets = np.arange(total) - np.repeat(np.cumsum(counts) - counts, counts)
            di_all.append(self.order[t][np.repeat(lo, counts) + offsets])
        if not qi_all:
            return []
        n_desc = len(self.all_desc)
        pair = np.unique(np.concatenate(qi_all).astype(np.int64) * n_desc + np.concatenate(di_all))
        qi, di = pair // n_desc, pair % n_desc
        dist = _POP8[np.bitwise_xor(q.descriptors[qi], self.all_desc[di])].sum(axis=1)
        keep = dist <= MAX_VOTE_DISTANCE
        voted = np.unique(qi[keep] * len(self.ids) + self.owner[di[keep]]) % len(self.ids)
        counts = np.bincount(voted, minlength=len(self.ids))
        best = np.argsort(-counts, kind="stable")[:CANDIDATES]
        return [int(i) for i in best if counts[i] >= 2]

    def verify(self, q: Features, i: int) -> tuple[int, float]:
        """(inliers, correlation) of the best similarity transform (crop, scale, rotation) of q into image i."""
        import cv2

        d = self.descriptors[i]
        if len(q.descriptors) < 2 or len(d) < 2:
            return 0, 0.0
        pairs = cv2.BFMatcher(cv2.NORM_HAMMING).knnMatch(q.descriptors, d, k=2)
        good = [m for m, n in (p for p in pairs if len(p) == 2) if m.distance < 0.8 * n.distance]
        if len(good) < MIN_INLIERS:
            return 0, 0.0
        src = q.points[[m.queryIdx for m in good]]
        dst = self.points[i][[m.trainIdx for m in good]]
        matrix, mask = cv2.estimateAffinePartial2D(src, dst, method=cv2.RANSAC, ransacReprojThreshold=4.0,
                                                   maxIters=1000, confidence=0.99, refineIters=5)
        if matrix is None or mask is None:
            return 0, 0.0
        # A near-zero scale maps every point onto one spot and "explains" any matches: reject such fits,
        # and fits whose inliers bunch up in one small patch of the indexed picture.
        scale = float(np.hypot(matrix[0, 0], matrix[1, 0]))
        inliers = dst[mask.ravel() == 1]
        if not 0.25 < scale < 4.0 or len(inliers) < MIN_INLIERS or float(inliers.std(axis=0).mean()) < MIN_SPREAD:
            return 0, 0.0
        return len(inliers), correlation(q.grey, matrix, self.small[i])

    def search(self, image: Any, k: int = 5, threshold: float = 0.5,
               exhaustive: bool = False) -> list[dict[str, Any]]:
        """Matches with similarity >= `threshold`, best first: {"index", "title", "url", "similarity", "how"}."""
        q = query_features(image)
        scores: dict[int, tuple[float, str]] = {}
        if len(self.ids):
            dist = hamming64(q.phash, self.phashes)
            for i in np.flatnonzero(dist <= PHASH_MAX_DISTANCE):
                target = self.small[int(i)]
                stretch = np.array([[target.shape[1] * SMALL / q.grey.shape[1], 0, 0],
                                    [0, target.shape[0] * SMALL / q.grey.shape[0], 0]])
                if correlation(q.grey, stretch, target) >= MIN_CORRELATION:  # same layout, same picture
                    scores[int(i)] = (1.0 - float(dist[i]) / 64.0, "near-duplicate")
        for i in (range(len(self.ids)) if exhaustive else self._votes(q)):
            inliers, corr = self.verify(q, i)
            if inliers >= MIN_INLIERS and corr >= MIN_CORRELATION:
                sim = corr * inliers / (inliers + MIN_INLIERS / 2)
                if sim > scores.get(i, (0.0, ""))[0]:
                    scores[i] = (sim, f"{inliers} matching features, correlation {corr:.2f}")
        ranked = sorted(((s, how, i) for i, (s, how) in scores.items() if s >= threshold), key=lambda x: (-x[0], x[2]))
        return [{"index": i, "title": self.titles[i], "url": self.urls[i], "similarity": round(s, 3), "how": how}
                for s, how, i in ranked[:k]]
