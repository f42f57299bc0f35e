"""Deterministic, realistic synthetic records for both endpoints.

Everything is derived from ``seed`` plus the id or the ranking query, so the
same input always produces the same record, in any process.  Records are
cached together with their encoded JSON so the server stays fast under load.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import random
import string
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import msgspec

SENTINEL = -99999  # what the API sends for a count it does not know

# create_time values stay before this instant (2026-01-01) and after TikTok's
# launch, so they are always plausible past unix timestamps.
_PAST_CAP = 1_767_225_600
_EARLIEST = 1_472_688_000

# Word tables read better packed than one item per line.
# fmt: off
_WORDS = (
    "bulan", "lahir", "kalian", "ada", "ngga", "kira", "W", "huzz", "magnet", "haul",
    "unboxing", "review", "ootd", "grwm", "tutorial", "morning", "routine", "deal",
    "สวัสดี", "ร้านค้า", "mua", "ngay", "giá", "rẻ", "đẹp", "新品", "好物推荐", "限时",
    "かわいい", "おすすめ", "추천", "¡oferta!", "descuento", "niño", "café", "naïve",
    "Straße", "مرحبا", "تخفيضات", "привет", "скидка", "0", "100%",
)
_EMOJI = ("🧲", "🔥", "😍", "✨", "💯", "🛒", "❤️", "👀", "🤣", "🙏🏻", "👩‍👩‍👧", "🇺🇸", "🎉")
_HASHTAGS = (
    "#fyp", "#foryou", "#ttshopfinds", "#tiktokmademebuyit", "#viral", "#seasaltspray",
    "#barbertok", "#level3", "#skincare", "#fypシ", "#xuhuong", "#ฟีด",
)
# Text that trips naive encoders and parsers: quotes, backslashes, markup,
# zero-width and non-breaking spaces.
_AWKWARD = ('"quoted"', "back\\slash", "<b>bold</b>", "&amp;", "50% off", "\u200b", "a\u00a0b")
_NICK_NAMES = (
    "ﾌひﾚﾉの", "🌸Mia🌸", "Đức Anh", "سارة", "김민지", 'Lil\' "Joe"', "ᴊᴏʜɴ", "Ana ✨",
    "TikTok Shop", "user8837261", "", "ＦＵＬＬＷＩＤＴＨ", "Zoë 🇫🇷", "dr.\\slash",
)
_REGIONS = ("US", "GB", "ID", "TH", "VN", "MY", "PH", "SG", "SA", "MX", "BR", "DE", "FR", "JP")
_CREATOR_CATEGORIES = (
    "Other", "Beauty & Personal Care", "Fashion", "Food & Drink", "Gaming", "Pets",
    "Sports & Outdoor", "Home & Garden", "Comedy", "Education", "Music", "",
)
_PRODUCT_CATEGORIES = (
    ("601450", "Beauty & Personal Care"), ("601152", "Womenswear & Underwear"),
    ("600001", "Home Supplies"), ("602284", "Phones & Electronics"),
    ("600024", "Kitchenware"), ("605196", "Sports & Outdoor"),
    ("700645", "Food & Beverages"), ("601739", "Pet Supplies"),
    ("824328", "Menswear & Underwear"), ("604206", "Toys & Hobbies"),
)
_PRODUCT_CATEGORY_NAMES = dict(_PRODUCT_CATEGORIES)
_FRAMES = (("1024", "576"), ("1280", "720"), ("1920", "1080"), ("1024", "1024"), ("960", "540"))
_RATIOS = ("540p", "720p", "1080p")
# fmt: on
_HANDLE_CHARS = string.ascii_lowercase + string.digits + "._"


@dataclass(frozen=True, slots=True)
class RankingQuery:
    """The parameters that select one ranking list (everything but the page)."""

    date: str
    region: str
    video_rank_field: int
    rank_type: int
    product_category_id: str | None = None
    created_by_ai: str | None = None  # "true" / "false" / None

    def seed_text(self) -> str:
        """Stable text naming this list, used to seed its random streams."""
        return (
            f"{self.date}|{self.region}|{self.video_rank_field}|{self.rank_type}"
            f"|{self.product_category_id}|{self.created_by_ai}"
        )


@dataclass(frozen=True, slots=True)
class Entry:
    """A generated record and its encoded JSON (embedded as-is in answers)."""

    record: dict[str, Any]
    raw: msgspec.Raw


def _entry(record: dict[str, Any]) -> Entry:
    return Entry(record, msgspec.Raw(msgspec.json.encode(record)))


class SyntheticData:
    """Generates and caches the records the fake API serves."""

    def __init__(self, seed: int, known_ratio: float, ranking_length: int) -> None:
        if not 0.0 <= known_ratio <= 1.0:
            raise ValueError("known_ratio must be in [0, 1]")
        if ranking_length < 0:
            raise ValueError("ranking_length must not be negative")
        self.seed = seed
        self.known_ratio = known_ratio
        self.ranking_length = ranking_length
        self._units: dict[str, float] = {}
        self._details: dict[str, Entry] = {}
        self._curves: dict[RankingQuery, tuple[float, float]] = {}
        self._ranking: dict[tuple[RankingQuery, int], Entry] = {}

    # -- ids -----------------------------------------------------------------

    def _unit(self, video_id: str) -> float:
        """A stable pseudo-random number in [0, 1) for ``video_id``."""
        unit = self._units.get(video_id)
        if unit is None:
            digest = hashlib.blake2b(f"{self.seed}:{video_id}".encode(), digest_size=8).digest()
            unit = int.from_bytes(digest, "big") / 2**64
            self._units[video_id] = unit
        return unit

    def is_known(self, video_id: str) -> bool:
        """Whether the API has data for ``video_id`` (stable per id and seed)."""
        return self._unit(video_id) < self.known_ratio

    def make_ids(self, n: int, known: bool | None = None) -> list[str]:
        """``n`` distinct 19-digit video ids; a longer list extends a shorter one."""
        if known is True and self.known_ratio == 0.0:
            raise ValueError("known_ratio is 0: no id is known")
        if known is False and self.known_ratio == 1.0:
            raise ValueError("known_ratio is 1: every id is known")
        ids: list[str] = []
        seen: set[str] = set()
        for candidate in self._id_stream():
            if len(ids) >= n:
                break
            if candidate in seen or (known is not None and self.is_known(candidate) != known):
                continue
            seen.add(candidate)
            ids.append(candidate)
        return ids

    def _id_stream(self) -> Iterator[str]:
        rng = random.Random(f"{self.seed}:ids")
        while True:
            yield _video_id(rng)

    # -- detail endpoint -----------------------------------------------------

    def detail_entry(self, video_id: str) -> Entry:
        """Cached record for a known id; raises KeyError for unknown ids."""
        entry = self._details.get(video_id)
        if entry is None:
            if not self.is_known(video_id):
                raise KeyError(f"video {video_id} is unknown to the API (seed {self.seed})")
            entry = _entry(_detail_record(random.Random(f"{self.seed}:{video_id}"), video_id))
            self._details[video_id] = entry
        return entry

    def detail_entries(self, video_ids: Sequence[str]) -> list[Entry]:
        """Entries for the known ids among ``video_ids``, deduplicated.

        They come back in a stable order unrelated to the request order, as
        the real API does not promise to keep it.
        """
        known = sorted({v for v in video_ids if self.is_known(v)}, key=self._unit)
        return [self.detail_entry(v) for v in known]

    # -- ranking endpoint ----------------------------------------------------

    def ranking_entries(self, query: RankingQuery, start: int, stop: int) -> list[Entry]:
        """Entries at ranks ``[start, stop)``, clipped to the list length."""
        stop = min(stop, self.ranking_length)
        return [self._ranking_entry(query, rank) for rank in range(start, stop)]

    def _ranking_entry(self, query: RankingQuery, rank: int) -> Entry:
        entry = self._ranking.get((query, rank))
        if entry is None:
            rng = random.Random(f"{self.seed}:ranking:{query.seed_text()}:{rank}")
            metric = self._metric(query, rank)
            video_id = _video_id(rng)
            # Ranked videos are ones the detail endpoint knows, so a client can
            # follow a ranking with detail look-ups.
            while self.known_ratio > 0.0 and not self.is_known(video_id):
                video_id = _video_id(rng)
            entry = _entry(_ranking_record(rng, query, video_id, metric))
            self._ranking[(query, rank)] = entry
        return entry

    def _metric(self, query: RankingQuery, rank: int) -> int:
        """The ranked value at ``rank``: a power-law curve, non-increasing by construction."""
        curve = self._curves.get(query)
        if curve is None:
            rng = random.Random(f"{self.seed}:curve:{query.seed_text()}")
            top = rng.uniform(5e6, 5e8) if query.video_rank_field == 1 else rng.uniform(2e3, 2e5)
            curve = (top, rng.uniform(0.6, 1.3))
            self._curves[query] = curve
        top, alpha = curve
        return int(top * (rank + 1) ** -alpha)


# -- record builders ----------------------------------------------------------


def _video_id(rng: random.Random) -> str:
    return str(rng.randrange(7_000_000_000_000_000_000, 7_600_000_000_000_000_000))


def _user_id(rng: random.Random) -> str:
    return str(rng.randrange(6_600_000_000_000_000_000, 7_400_000_000_000_000_000))


def _maybe_unknown(rng: random.Random, value: int, chance: float = 0.04) -> int:
    return SENTINEL if rng.random() < chance else value


def _handle(rng: random.Random) -> str:
    return "".join(rng.choice(_HANDLE_CHARS) for _ in range(rng.randint(4, 18)))


def _text(rng: random.Random) -> str:
    if rng.random() < 0.05:
        return ""
    parts = [rng.choice(_WORDS) for _ in range(rng.randint(1, 9))]
    parts += [rng.choice(_EMOJI) for _ in range(rng.randint(0, 3))]
    if rng.random() < 0.2:
        parts.append(rng.choice(_AWKWARD))
    rng.shuffle(parts)
    parts += [rng.choice(_HASHTAGS) for _ in range(rng.randint(0, 4))]
    return " ".join(parts) + (" " if rng.random() < 0.2 else "")


def _nick_name(rng: random.Random) -> str:
    name = rng.choice(_NICK_NAMES)
    return name + rng.choice(_EMOJI) if rng.random() < 0.2 else name


def _engagement(rng: random.Random, views: int) -> dict[str, int]:
    digg = int(views * rng.uniform(0.0, 0.15))
    return {
        "total_comments_cnt": _maybe_unknown(rng, int(digg * rng.uniform(0.0, 0.05))),
        "total_digg_cnt": _maybe_unknown(rng, digg),
        "total_favorites_cnt": _maybe_unknown(rng, int(digg * rng.uniform(0.0, 0.2)), 0.15),
        "total_shares_cnt": _maybe_unknown(rng, int(digg * rng.uniform(0.0, 0.1))),
    }


def _random_views(rng: random.Random) -> int:
    return 0 if rng.random() < 0.05 else int(10 ** rng.uniform(0.0, 8.5))


def _sales(rng: random.Random, sales_flag: int) -> tuple[int, int]:
    if sales_flag == 0 or rng.random() < 0.2:
        return 0, 0
    count = int(10 ** rng.uniform(0.0, 4.5))
    return count, int(count * rng.uniform(3.0, 60.0))


def _increments(rng: random.Random, total: int) -> tuple[int, int, int]:
    """1/7/30-day increments; old videos (most of them) gained nothing lately."""
    if total <= 0 or rng.random() < 0.6:
        return 0, 0, 0
    d30 = int(total * rng.uniform(0.0, 0.8))
    d7 = int(d30 * rng.uniform(0.0, 1.0))
    return int(d7 * rng.uniform(0.0, 1.0)), d7, d30


def _detail_record(rng: random.Random, video_id: str) -> dict[str, Any]:
    create_time = rng.randrange(_EARLIEST, _PAST_CAP)
    height, width = rng.choice(_FRAMES)
    sales_flag = rng.choices((0, 1, 2), weights=(6, 3, 1))[0]
    sale_cnt, sale_gmv = _sales(rng, sales_flag)
    views = _random_views(rng)
    engagement = _engagement(rng, views)
    digg = max(0, engagement["total_digg_cnt"])
    digg_1d, digg_7d, digg_30d = _increments(rng, digg)
    views_1d, views_7d, views_30d = _increments(rng, views)
    signature = "".join(rng.choice(string.ascii_letters + string.digits) for _ in range(24))
    return {
        "create_time": str(create_time),
        "created_by_ai": "true" if rng.random() < 0.05 else "false",
        "data_size": str(rng.randrange(150_000, 90_000_000)),
        "duration": 0 if rng.random() < 0.02 else rng.randint(3, 600),
        "height": height,
        "ratio": rng.choice(_RATIOS),
        "reflow_cover": (
            "https://p16-sign-va.tiktokcdn.com/obj/tos-useast2a-p-0037-aiso/"
            f"{rng.getrandbits(128):032x}_{create_time}?x-expires={create_time + 86_400}"
            f"&x-signature={signature}%2F{rng.randint(0, 9)}%3D"
        ),
        "region": "" if rng.random() < 0.1 else rng.choice(_REGIONS),
        "sales_flag": sales_flag,
        "total_comments_cnt": engagement["total_comments_cnt"],
        "total_digg_1d_cnt": digg_1d,
        "total_digg_30d_cnt": digg_30d,
        "total_digg_7d_cnt": digg_7d,
        "total_digg_cnt": engagement["total_digg_cnt"],
        "total_favorites_cnt": engagement["total_favorites_cnt"],
        "total_shares_cnt": engagement["total_shares_cnt"],
        "total_video_sale_cnt": sale_cnt,
        "total_video_sale_gmv_amt": sale_gmv,
        "total_views_1d_cnt": views_1d,
        "total_views_30d_cnt": views_30d,
        "total_views_7d_cnt": views_7d,
        "total_views_cnt": views,
        "unique_id": _handle(rng),
        "user_id": _user_id(rng),
        "video_desc": _text(rng),
        "video_id": video_id,
        "width": width,
    }


def _product_category_list(rng: random.Random, required: str | None) -> str:
    """The API's JSON-in-a-string category list, spacing quirks included."""
    chosen = rng.sample(_PRODUCT_CATEGORIES, rng.choice((1, 1, 1, 2)))
    if required is not None:
        name = _PRODUCT_CATEGORY_NAMES.get(required, f"Category {required}")
        chosen = [(required, name), *(c for c in chosen[:1] if c[0] != required)]
    items = (
        '{ "category_name":' + msgspec.json.encode(name).decode() + f',"category_id":"{cid}"}}'
        for cid, name in chosen
    )
    return "[" + ",".join(items) + "]"


def _video_products(rng: random.Random) -> str:
    """Bare 19-digit product ids in a string: above 2**53, so doubles mangle them."""
    ids = (
        str(rng.randrange(1_729_000_000_000_000_000, 1_732_000_000_000_000_000))
        for _ in range(rng.choice((1, 1, 1, 2, 3)))
    )
    return "[" + ",".join(ids) + "]"


def _ranking_create_time(rng: random.Random, query: RankingQuery) -> int:
    day = dt.datetime.strptime(query.date, "%Y-%m-%d").replace(tzinfo=dt.timezone.utc)
    span_days = {1: 3, 2: 14, 3: 60}.get(query.rank_type, 3)
    created = min(int(day.timestamp()), _PAST_CAP) - rng.randrange(0, span_days * 86_400)
    return max(created, _EARLIEST)


def _ranking_record(
    rng: random.Random, query: RankingQuery, video_id: str, metric: int
) -> dict[str, Any]:
    by_sales = query.video_rank_field == 2
    sells = (by_sales and metric > 0) or query.product_category_id is not None
    sales_flag = rng.choice((1, 1, 2)) if sells else rng.choices((0, 1, 2), weights=(6, 3, 1))[0]
    if by_sales:
        sale_cnt, sale_gmv = metric, int(metric * rng.uniform(3.0, 60.0))
        # Sales leaders often show no engagement at all, as in the spec example.
        views = 0 if rng.random() < 0.2 else _random_views(rng)
    else:
        sale_cnt, sale_gmv = _sales(rng, sales_flag)
        views = metric
    engagement = _engagement(rng, views)
    has_products = query.product_category_id is not None or (
        sales_flag != 0 and rng.random() < 0.85
    )
    user_id = _user_id(rng)
    if query.created_by_ai is not None:
        created_by_ai = query.created_by_ai
    else:
        created_by_ai = "true" if rng.random() < 0.05 else "false"
    token = "".join(rng.choice(string.ascii_letters + string.digits + "-_") for _ in range(52))
    return {
        "avatar": (
            "https://echosell-images.tos-ap-southeast-1.volces.com/user-avatar/"
            f"{rng.randint(100, 999)}/MS4wLjABAAAA{token}.jpg"
        ),
        "category": rng.choice(_CREATOR_CATEGORIES),
        "create_time": str(_ranking_create_time(rng, query)),
        "duration": 0 if rng.random() < 0.02 else rng.randint(3, 600),
        "nick_name": _nick_name(rng),
        "product_category_list": (
            _product_category_list(rng, query.product_category_id) if has_products else "[]"
        ),
        "reflow_cover": (
            "https://echosell-images.tos-ap-southeast-1.volces.com/video-cover/"
            f"{rng.randint(100, 999)}/{video_id}.jpg"
        ),
        "region": query.region,
        "sales_flag": sales_flag,
        "total_comments_cnt": engagement["total_comments_cnt"],
        "total_digg_cnt": engagement["total_digg_cnt"],
        "total_favorites_cnt": engagement["total_favorites_cnt"],
        "total_shares_cnt": engagement["total_shares_cnt"],
        "total_video_sale_cnt": sale_cnt,
        "total_video_sale_gmv_amt": sale_gmv,
        "total_views_cnt": views,
        "unique_id": _handle(rng),
        "user_id": user_id,
        "video_desc": _text(rng),
        "video_id": video_id,
        "video_products": _video_products(rng) if has_products else "[]",
        "created_by_ai": created_by_ai,
    }
