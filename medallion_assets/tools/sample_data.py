"""Seeded generator of monthly CSV files in the REES46 "eCommerce behavior data from multi
category store" format (``2019-Oct.csv``, ``2019-Nov.csv``, ...).

Why a generator: the published files are several gigabytes each, so tests, demos and CI use
synthetic months instead. Uniform random rows would let the pipeline pass without ever meeting
what the real data throws at it, so the output copies the real files' shape:

* the exact header, ``YYYY-MM-DD HH:MM:SS UTC`` timestamps in non-decreasing order, int64
  category ids around 2.05e18 written as exact integers, prices with two decimals;
* the same event mix (about 94.0 % view, 4.3 % cart, 1.7 % purchase);
* power-law popularity of products and users, sessions (one UUID per burst of a user's
  activity) and a daily traffic cycle;
* a fixed catalogue: every product keeps its category, category code, brand and base price on
  every row and in every month generated with the same seed;
* the real files' defects, so the pipeline's handling of them is exercised: empty
  ``category_code`` (~32 % of rows) and ``brand`` (~14 %), a small share of ``0.00`` prices,
  rare empty ``user_id`` and ``user_session`` values, and exact duplicate rows (~0.5 %, or the
  share of the chosen shape).

Shapes: a named `MonthShape` (``SHAPES``) sets the knobs that change the Spark work on a month:
how many distinct users and brands its group-bys and joins meet and how skewed they are, how
long sessions are, and how many exact duplicates deduplication drops. Why more than one: a
benchmark run on one data shape only shows the pipeline is fast on that shape; comparing on two
shows whether its speed depends on the key cardinalities and skew.

* ``"sample"`` (the default, so every file written without naming a shape keeps its bytes):
  sessions drawn from a pool of 3 million users with Zipf popularity (rank k ~ 1/(k + 20)), so
  a few users are very active (the top one has ~0.4 % of all sessions) and distinct users grow
  slowly with rows (~26,000 at 200,000 rows, ~100,000 at 1 million, an expected ~1.5 million
  at a real month's 42 million, ~6 sessions each); the ~140 named brands of the category
  families; 0.5 % duplicates; 4.5 events per session.
* ``"wide"``: shaped like the published October 2019 file at full size. A pool of 4.5 million
  users with log-normally spread activity (sd 1.0 of log-activity), which is expected to show
  about 3 million distinct users with about 3 sessions each in a real month's 42 million rows,
  and shows almost one user per session in small files (~43,000 users at 200,000 rows, ~200,000
  at 1 million; no user above ~0.003 % of the sessions); 3,000 brands with
  Zipf popularity (rank k on a product with probability ~1/(k + 1): the named brands first, then
  made-up ones), every one on at least one product, over the whole catalogue rather than per
  category family; 0.3 % duplicates; 4.6 events per session. Products, categories, prices and
  the catalogue's empty brands are the same as in ``"sample"`` for the same seed.

Why streamed: a real month holds over 40 million rows. Rows are generated and written in
chunks of vectorised numpy work, each chunk covering its own contiguous slice of the month, so
memory depends on the chunk size and never on the number of rows, and output runs at millions
of rows per second. The file is written under a hidden temporary name in the target directory
and renamed into place, so a reader watching the directory never sees a half-written file.

The same seed and arguments always give a byte-identical file; different months (or seeds)
give different data. The header, the month keys and the file names are the package's own
(`schema.SOURCE_HEADER`, `partitions.parse_month_key`, `partitions.landing_file_name`), so the
generator writes exactly what the landing sensor and bronze expect. A month of tens of millions of
rows takes a while: the command line reports its progress on stderr. Every guarantee above
holds for every shape; a shape's files are deterministic in the same way.
"""

from __future__ import annotations

import argparse
import calendar
import functools
import gzip as gzip_module
import os
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, TextIO

import numpy as np

from medallion_assets.partitions import landing_file_name, parse_month_key
from medallion_assets.schema import SOURCE_HEADER

__all__ = [
    "DEFAULT_CHUNK_ROWS",
    "DEFAULT_ROWS",
    "DEFAULT_SHAPE",
    "HEADER",
    "SHAPES",
    "MonthShape",
    "Progress",
    "file_name_for",
    "generate_month",
    "main",
]

HEADER = SOURCE_HEADER  # the landing files' header line (schema.py owns it)
DEFAULT_ROWS = 100_000
DEFAULT_CHUNK_ROWS = 200_000
NAME_STYLES = ("mon", "numeric")

# Shape of the data, taken from the published Oct/Nov 2019 files.
_EVENT_TYPES = ("view", "cart", "purchase")
_EVENT_CUTS = (0.940, 0.983)  # cumulative shares: view < 0.940 <= cart < 0.983 <= purchase
_NULL_CATEGORY_CODE_SHARE = 0.32
_NULL_BRAND_SHARE = 0.14
_ZERO_PRICE_SHARE = 0.001
_EMPTY_USER_ID_SHARE = 0.0001
_EMPTY_SESSION_SHARE = 0.00001
_MAX_PRICE = 2574.07

_N_PRODUCTS = 60_000
_PRODUCT_ZIPF_OFFSET = 5.0  # top product gets ~1.6 % of the rows
_N_CATEGORIES = 650
_USER_ID_BASE = 500_000_000
_USER_ID_SPAN = 100_000_000
_USER_ID_MULTIPLIER = 37_139_213  # odd and not a multiple of 5: a bijection modulo 10**8
_SAME_PRODUCT_AGAIN = 0.4  # chance an event in a session is about the product of the event before
_MEAN_EVENT_GAP_SECONDS = 45.0
_CATEGORY_ID_BASE = 2_053_013_552_226_107_603
_CATEGORY_ID_SPAN = 122_406_042_867_859_919

# (category code, typical price in the shop or None for "draw one")
_CATEGORY_CODES: tuple[tuple[str, float | None], ...] = (
    ("electronics.smartphone", 260.0),
    ("electronics.audio.headphone", 45.0),
    ("electronics.audio.acoustic", 90.0),
    ("electronics.audio.subwoofer", 120.0),
    ("electronics.audio.microphone", 40.0),
    ("electronics.audio.music_tools.piano", 300.0),
    ("electronics.video.tv", 420.0),
    ("electronics.video.projector", 350.0),
    ("electronics.clocks", 150.0),
    ("electronics.tablet", 220.0),
    ("electronics.telephone", 25.0),
    ("electronics.camera.photo", 450.0),
    ("electronics.camera.video", 300.0),
    ("computers.notebook", 620.0),
    ("computers.desktop", 700.0),
    ("computers.components.videocards", 330.0),
    ("computers.components.cpu", 220.0),
    ("computers.components.motherboard", 130.0),
    ("computers.components.memory", 50.0),
    ("computers.components.hdd", 70.0),
    ("computers.components.power_supply", 60.0),
    ("computers.components.cooler", 25.0),
    ("computers.peripherals.printer", 180.0),
    ("computers.peripherals.mouse", 15.0),
    ("computers.peripherals.keyboard", 25.0),
    ("computers.peripherals.monitor", 200.0),
    ("computers.network.router", 40.0),
    ("appliances.kitchen.washer", 320.0),
    ("appliances.kitchen.refrigerators", 480.0),
    ("appliances.kitchen.microwave", 90.0),
    ("appliances.kitchen.kettle", 25.0),
    ("appliances.kitchen.blender", 45.0),
    ("appliances.kitchen.coffee_machine", 250.0),
    ("appliances.kitchen.oven", 380.0),
    ("appliances.kitchen.hood", 150.0),
    ("appliances.kitchen.dishwasher", 370.0),
    ("appliances.kitchen.toster", 30.0),
    ("appliances.kitchen.mixer", 35.0),
    ("appliances.environment.vacuum", 160.0),
    ("appliances.environment.air_conditioner", 420.0),
    ("appliances.environment.water_heater", 140.0),
    ("appliances.environment.fan", 30.0),
    ("appliances.environment.air_heater", 50.0),
    ("appliances.iron", 40.0),
    ("appliances.personal.hair_cutter", 30.0),
    ("appliances.personal.massager", 60.0),
    ("appliances.sewing_machine", 170.0),
    ("apparel.shoes", 70.0),
    ("apparel.shoes.keds", 60.0),
    ("apparel.shoes.sandals", 35.0),
    ("apparel.shoes.slipons", 40.0),
    ("apparel.shoes.step_ins", 45.0),
    ("apparel.trousers", 40.0),
    ("apparel.tshirt", 20.0),
    ("apparel.jeans", 50.0),
    ("apparel.costume", 60.0),
    ("apparel.dress", 45.0),
    ("apparel.skirt", 30.0),
    ("furniture.living_room.sofa", 450.0),
    ("furniture.living_room.chair", 80.0),
    ("furniture.living_room.cabinet", 200.0),
    ("furniture.bedroom.bed", 350.0),
    ("furniture.bedroom.pillow", 20.0),
    ("furniture.kitchen.table", 150.0),
    ("furniture.bathroom.toilet", 140.0),
    ("furniture.bathroom.bath", 260.0),
    ("furniture.universal.light", 35.0),
    ("kids.toys", 25.0),
    ("kids.carriage", 250.0),
    ("kids.skates", 45.0),
    ("kids.dolls", 30.0),
    ("kids.swing", 60.0),
    ("sport.bicycle", 280.0),
    ("sport.tennis", 60.0),
    ("sport.snowboard", 220.0),
    ("sport.ski", 200.0),
    ("auto.accessories.player", 90.0),
    ("auto.accessories.videoregister", 70.0),
    ("auto.accessories.alarm", 120.0),
    ("auto.accessories.compressor", 40.0),
    ("auto.accessories.parktronic", 50.0),
    ("construction.tools.drill", 90.0),
    ("construction.tools.saw", 110.0),
    ("construction.tools.welding", 160.0),
    ("construction.tools.screw", 80.0),
    ("construction.tools.pump", 120.0),
    ("construction.components.faucet", 70.0),
    ("country_yard.lawn_mower", 230.0),
    ("country_yard.cultivator", 300.0),
    ("accessories.bag", 40.0),
    ("accessories.wallet", 20.0),
    ("accessories.umbrella", 15.0),
    ("medicine.tools.tonometer", 40.0),
    ("stationery.cartrige", 30.0),
)

_BRANDS_BY_FAMILY: dict[str, tuple[str, ...]] = {
    "electronics": (
        "samsung", "apple", "xiaomi", "huawei", "oppo", "lg", "sony", "vivo", "honor",
        "meizu", "jbl", "philips", "canon", "nikon", "lenovo", "realme", "nokia", "acer",
    ),
    "computers": (
        "lenovo", "hp", "asus", "acer", "dell", "apple", "msi", "logitech", "gigabyte",
        "intel", "amd", "kingston", "seagate", "tp-link", "defender", "a4tech",
    ),
    "appliances": (
        "bosch", "lg", "samsung", "indesit", "beko", "philips", "tefal", "redmond", "polaris",
        "vitek", "gorenje", "elenberg", "atlant", "haier", "midea", "delonghi", "braun",
        "electrolux", "candy", "scarlett", "artel", "zanussi",
    ),
    "apparel": (
        "nike", "adidas", "puma", "reebok", "respect", "baden", "rieker", "tamaris", "ecco",
        "asics", "fila", "skechers", "wonderful", "strobbs",
    ),
    "furniture": (
        "brw", "sonberg", "askona", "dreamline", "bestway", "intex", "cersanit", "roca",
        "lucente", "novotech",
    ),
    "kids": ("lego", "mattel", "hasbro", "chicco", "cybex", "bburago", "hotwheels", "carrello"),
    "sport": ("stern", "stels", "forward", "nordway", "wilson", "head", "cube", "atemi"),
    "auto": ("pioneer", "kenwood", "jvc", "alpine", "mystery", "prology", "starline", "pandora"),
    "construction": (
        "bosch", "makita", "dewalt", "metabo", "hammer", "interskol", "grohe", "karcher",
        "sturm", "ryobi",
    ),
    "country_yard": ("huter", "champion", "karcher", "gardena", "patriot", "daewoo"),
    "accessories": ("samsonite", "wenger", "hama", "ritmix", "tigernu", "zepter"),
    "medicine": ("omron", "and", "microlife", "beurer", "b.well"),
    "stationery": ("hp", "canon", "epson", "brother", "cactus", "xerox"),
    # categories without a code
    "": (
        "lucente", "cordiant", "nokian", "michelin", "tefal", "artel", "samsung", "xiaomi",
        "maxwell", "elari", "casio", "garmin", "triangle", "yokohama", "pirelli", "sv",
        "rondell", "vitek", "maxima", "ardesto",
    ),
}

# Made-up brand names, after the named ones, for shapes with more brands: consonant + vowel
# syllables, two per name (4,900 names) and then three.
_BRAND_CONSONANTS = "bdfgklmnprstvz"
_BRAND_VOWELS = "aeiou"
_MAX_BRANDS = 20_000  # well below the catalogue's branded products, so each brand can have one
_USER_ACTIVITIES = ("zipf", "lognormal")


# ---------------------------------------------------------------------------------------------
# Shapes


@dataclass(frozen=True)
class MonthShape:
    """The knobs of a month's data that change the work a pipeline does on it (see the module
    docstring for the named shapes and why they exist).

    * `users`: size of the user pool; how many of them a file shows depends on its rows.
    * `user_activity`: how sessions spread over the pool. ``"zipf"``: the user of rank k has a
      session with probability ~1/(k + `user_skew`); ``"lognormal"``: users' activities are
      log-normal with `user_skew` the standard deviation of log-activity.
    * `brands`: None for the named brands of each category family (about 140 in all, weighted
      1/(j + 1) within a family); a number for that many brands over the whole catalogue, every
      one on at least one product, the brand of rank k on a product with probability
      ~1/(k + `brand_zipf_offset`).
    * `duplicate_share`: share of rows that are exact copies of the row before them.
    * `mean_session_events`: mean events per session (geometric lengths, at least one).
    """

    users: int
    user_activity: str
    user_skew: float
    brands: int | None
    brand_zipf_offset: float
    duplicate_share: float
    mean_session_events: float

    def __post_init__(self) -> None:
        problems = []
        if not 1 <= self.users <= _USER_ID_SPAN:
            problems.append(f"users must be in 1..{_USER_ID_SPAN}")
        if self.user_activity not in _USER_ACTIVITIES:
            problems.append(f"user_activity must be one of {_USER_ACTIVITIES}")
        if not self.user_skew > 0:
            problems.append("user_skew must be > 0")
        if self.brands is not None and not 1 <= self.brands <= _MAX_BRANDS:
            problems.append(f"brands must be None or in 1..{_MAX_BRANDS}")
        if not self.brand_zipf_offset > 0:
            problems.append("brand_zipf_offset must be > 0")
        if not 0 <= self.duplicate_share < 1:
            problems.append("duplicate_share must be in [0, 1)")
        if not self.mean_session_events >= 1:
            problems.append("mean_session_events must be >= 1")
        if problems:
            raise ValueError(f"Invalid MonthShape {self}: {'; '.join(problems)}.")


DEFAULT_SHAPE = "sample"
SHAPES: dict[str, MonthShape] = {
    # A few heavy users, the families' named brands.
    "sample": MonthShape(
        users=3_000_000,
        user_activity="zipf",
        user_skew=20.0,
        brands=None,
        brand_zipf_offset=1.0,
        duplicate_share=0.005,
        mean_session_events=4.5,
    ),
    # The published October 2019 file at full size (42.4 million rows): 4.5 million users with
    # log-activity sd 1.0 show ~3.0 million distinct users at ~3.0 sessions each in its ~9.2
    # million sessions; ~3,000 brands; 0.3 % duplicates; ~4.6 events per session.
    "wide": MonthShape(
        users=4_500_000,
        user_activity="lognormal",
        user_skew=1.0,
        brands=3_000,
        brand_zipf_offset=1.0,
        duplicate_share=0.003,
        mean_session_events=4.6,
    ),
}


def _month_shape(shape: str) -> MonthShape:
    if not isinstance(shape, str) or shape not in SHAPES:
        raise ValueError(f"Unknown shape {shape!r}: expected one of {', '.join(SHAPES)}.")
    return SHAPES[shape]


# Rendering: rows are assembled from fixed-width pieces in blocks of this many rows.
_RENDER_ROWS = 32_768
_TAIL_WIDTH = 47  # "user_id,user_session\n"
_PRICE_WIDTH = 8  # "2574.07,"
_EVENT_BYTES = (
    np.array([e.encode() for e in _EVENT_TYPES], dtype="S8").view(np.uint8).reshape(-1, 8)
)
_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
_UUID_HEX_COLUMNS = np.array(
    [c for c in range(36) if c not in (8, 13, 18, 23)], dtype=np.intp
)
_POW10_9 = 10 ** np.arange(8, -1, -1, dtype=np.int64)
_POW10_4 = 10 ** np.arange(3, -1, -1, dtype=np.int64)
_TWO_DIGITS = np.array(
    [[48 + i // 10, 48 + i % 10] for i in range(100)], dtype=np.uint8
)


# ---------------------------------------------------------------------------------------------
# Names and validation


def _check_name_style(name_style: str) -> None:
    if name_style not in NAME_STYLES:
        raise ValueError(f"Invalid name_style {name_style!r}: expected one of {NAME_STYLES}.")


def file_name_for(month: str, name_style: str = "mon", gzip: bool = False) -> str:
    """The landing file name of a month: ``2019-Oct.csv`` (as published) or ``2019-10.csv``,
    with ``.gz`` appended when gzip-compressed."""
    first_day = parse_month_key(month)
    _check_name_style(name_style)
    return landing_file_name(first_day, published=name_style == "mon", gzip=gzip)


# ---------------------------------------------------------------------------------------------
# Catalogue: fixed per seed, shared by every month


@dataclass(frozen=True)
class _Catalog:
    # (n_products, width) uint8: "product_id,category_id,category_code,brand," NUL-padded
    product_bytes: np.ndarray
    base_cents: np.ndarray  # (n_products,) int64


def _zipf_weights(n: int, offset: float) -> np.ndarray:
    """Exact probabilities of the ranks drawn by `_zipf_ranks`."""
    k = np.arange(n, dtype=np.float64)
    return np.log((k + 1 + offset) / (k + offset)) / np.log((n + offset) / offset)


def _zipf_ranks(rng: np.random.Generator, size: int, n: int, offset: float) -> np.ndarray:
    """Ranks 0..n-1 with P(k) proportional to log((k+1+a)/(k+a)) ~ 1/(k+a): a power law whose
    inverse CDF is one exp per draw (no table, so the user pool can be large)."""
    lo, hi = np.log(offset), np.log(n + offset)
    x = np.exp(lo + rng.random(size) * (hi - lo)) - offset
    return np.minimum(x.astype(np.int64), n - 1)


def _pick_share(weights: np.ndarray, target: float, rng: np.random.Generator) -> np.ndarray:
    """A random set of items whose weights add up to (nearly exactly) `target`."""
    chosen = np.zeros(len(weights), dtype=bool)
    total = 0.0
    for i in rng.permutation(len(weights)).tolist():
        w = float(weights[i])
        if total + w <= target:
            chosen[i] = True
            total += w
            if total >= target * 0.999:
                break
    return chosen


@functools.lru_cache(maxsize=4)
def _brand_names(n: int) -> tuple[str, ...]:
    """`n` distinct brand names, most popular first: the families' named brands, then made-up
    ones (the same list for every seed)."""
    names = list(dict.fromkeys(b for family in _BRANDS_BY_FAMILY.values() for b in family))
    taken = set(names)
    syllables = [c + v for c in _BRAND_CONSONANTS for v in _BRAND_VOWELS]
    length = 2
    while len(names) < n:
        count = len(syllables) ** length
        for j in range(count):
            k = j * 7_919 % count  # a prime stride (coprime to 70**length): a scrambled order
            name = ""
            for _ in range(length):
                k, digit = divmod(k, len(syllables))
                name += syllables[digit]
            if name not in taken:
                taken.add(name)
                names.append(name)
                if len(names) == n:
                    break
        length += 1
    return tuple(names[:n])


@functools.lru_cache(maxsize=8)
def _catalog(seed: int, brands: int | None = None, brand_zipf_offset: float = 1.0) -> _Catalog:
    """The products of `seed`. `brands` None: each product's brand comes from its category
    family's named brands; a number: from that many brands with Zipf popularity over the whole
    catalogue (see `MonthShape`). Everything but the brand names is the same either way."""
    rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, 0xCA7A106])))
    popularity = _zipf_weights(_N_PRODUCTS, _PRODUCT_ZIPF_OFFSET)  # product i has rank i

    # Categories: each id has one code (several ids may share a code), sizes are skewed.
    n_codes = len(_CATEGORY_CODES)
    cat_code = rng.integers(0, n_codes, _N_CATEGORIES)
    cat_code[:n_codes] = rng.permutation(n_codes)  # every code is used at least once
    cat_ids = _CATEGORY_ID_BASE + rng.choice(_CATEGORY_ID_SPAN, _N_CATEGORIES, replace=False)
    cat_size = rng.lognormal(0.0, 1.2, _N_CATEGORIES)
    product_cat = rng.choice(_N_CATEGORIES, _N_PRODUCTS, p=cat_size / cat_size.sum())

    cat_weight = np.bincount(product_cat, weights=popularity, minlength=_N_CATEGORIES)
    cat_no_code = _pick_share(cat_weight, _NULL_CATEGORY_CODE_SHARE, rng)

    # Typical price per category, then per product around it.
    drawn = rng.lognormal(np.log(45.0), 1.0, _N_CATEGORIES)
    typical = np.array([_CATEGORY_CODES[c][1] or drawn[i] for i, c in enumerate(cat_code.tolist())])
    price = typical[product_cat] * rng.lognormal(0.0, 0.55, _N_PRODUCTS)
    base_cents = np.round(np.clip(price, 0.77, _MAX_PRICE) * 100).astype(np.int64)
    base_cents[_pick_share(popularity, _ZERO_PRICE_SHARE, rng)] = 0

    no_brand = _pick_share(popularity, _NULL_BRAND_SHARE, rng)
    brand_pick = rng.random(_N_PRODUCTS)

    product_ids = 1_000_000 + rng.choice(99_000_000, _N_PRODUCTS, replace=False)

    # Brands drawn from their own stream, so that the rest of the catalogue does not depend on
    # how many brands there are.
    brand_of_product = None
    if brands is not None:
        brand_rng = np.random.Generator(
            np.random.PCG64(np.random.SeedSequence([seed, 0xCA7A106, 0xB4A4D]))
        )
        branded = np.flatnonzero(~no_brand)
        brand_rank = np.full(_N_PRODUCTS, -1, dtype=np.int64)
        brand_rank[branded] = _zipf_ranks(brand_rng, len(branded), brands, brand_zipf_offset)
        # every brand on at least one product: the catalogue holds exactly `brands` brands
        brand_rank[brand_rng.choice(branded, brands, replace=False)] = np.arange(brands)
        names = _brand_names(brands)
        brand_of_product = ["" if r < 0 else names[r] for r in brand_rank.tolist()]

    # 1/(j+1)-weighted brand choice: a few brands dominate each family
    brand_cum = {f: np.cumsum(1.0 / np.arange(1, len(b) + 1)) for f, b in _BRANDS_BY_FAMILY.items()}
    lines = []
    for i in range(_N_PRODUCTS):
        cat = int(product_cat[i])
        code = "" if cat_no_code[cat] else _CATEGORY_CODES[cat_code[cat]][0]
        if brand_of_product is not None:
            brand = brand_of_product[i]
        elif no_brand[i]:
            brand = ""
        else:
            family = code.split(".", 1)[0]
            cum = brand_cum[family]
            j = int(np.searchsorted(cum, brand_pick[i] * cum[-1], side="right"))
            brand = _BRANDS_BY_FAMILY[family][min(j, len(cum) - 1)]
        lines.append(f"{product_ids[i]},{cat_ids[cat]},{code},{brand},".encode("ascii"))
    width = max(len(line) for line in lines)
    table = np.array(lines, dtype=f"S{width}").view(np.uint8).reshape(_N_PRODUCTS, width)
    table.setflags(write=False)
    base_cents.setflags(write=False)
    return _Catalog(product_bytes=table, base_cents=base_cents)


# ---------------------------------------------------------------------------------------------
# Month-level state


@dataclass(frozen=True)
class _Month:
    prefix: bytes  # b"2019-10-"
    seconds: int  # seconds in the month
    hour_edges: np.ndarray  # seconds at which each hour starts (plus the month's end)
    hour_cdf: np.ndarray  # share of the month's traffic before each edge
    price_salt: int
    user_salt: int


def _month_state(year: int, number: int, seed: int, rng: np.random.Generator) -> _Month:
    days = calendar.monthrange(year, number)[1]
    hours = np.arange(days * 24)
    hour_of_day = hours % 24
    weekday = (calendar.weekday(year, number, 1) + hours // 24) % 7
    # Daily cycle peaking in the (Moscow) evening, a little less on weekends, some day noise.
    intensity = (
        (1.0 + 0.6 * np.cos(2 * np.pi * (hour_of_day - 15) / 24))
        * np.where(weekday >= 5, 0.9, 1.0)
        * np.repeat(rng.lognormal(0.0, 0.12, days), 24)
    )
    cdf = np.concatenate([[0.0], np.cumsum(intensity)])
    cdf /= cdf[-1]
    return _Month(
        prefix=f"{year:04d}-{number:02d}-".encode("ascii"),
        seconds=days * 86_400,
        hour_edges=np.arange(days * 24 + 1, dtype=np.float64) * 3600.0,
        hour_cdf=cdf,
        price_salt=int(rng.integers(0, 1 << 20)),
        user_salt=int(np.random.SeedSequence([seed, 0x05E4]).generate_state(1)[0]) % _USER_ID_SPAN,
    )


def _seconds_at(month: _Month, share: np.ndarray | float) -> np.ndarray:
    """Second of the month at which `share` of the month's traffic has happened."""
    return np.floor(np.interp(share, month.hour_cdf, month.hour_edges)).astype(np.int64)


# ---------------------------------------------------------------------------------------------
# One chunk of rows


@dataclass
class _Flags:
    need_duplicate: bool
    need_empty_user: bool


def _sessions(rng: np.random.Generator, rows: int, mean_events: float) -> np.ndarray:
    """Session lengths (>= 1 event each, `mean_events` on average) adding up to exactly `rows`."""
    p = 1.0 / mean_events
    lengths = rng.geometric(p, int(rows * p * 1.1) + 16)
    while lengths.sum() < rows:
        lengths = np.concatenate([lengths, rng.geometric(p, int(rows * p * 0.2) + 16)])
    ends = np.cumsum(lengths)
    last = int(np.searchsorted(ends, rows))
    lengths = lengths[: last + 1].copy()
    lengths[-1] -= int(ends[last]) - rows
    return lengths


def _lognormal_ranks(rng: np.random.Generator, size: int, n: int, sigma: float) -> np.ndarray:
    """Ranks 0..n-1 (0 the most active) of a pool of `n` users whose activities are log-normal,
    exp(sigma * z) with z standard normal, each draw picking a user in proportion to activity.

    Picking in proportion to exp(sigma * z) is drawing z from Normal(sigma, 1) (density
    phi(z) * exp(sigma * z) is proportional to phi(z - sigma)), and the user with score z has
    rank n * P(Z > z) in the pool: one normal draw and one erfc per draw, no table, so the pool
    can be large."""
    z = rng.normal(sigma, 1.0, size)
    upper = 0.5 * _erfc(z / np.sqrt(2.0))
    return np.clip((upper * n).astype(np.int64), 0, n - 1)


def _erfc(x: np.ndarray) -> np.ndarray:
    """Complementary error function, relative error below 1.2e-7 (numpy has none; Numerical
    Recipes' Chebyshev fit)."""
    z = np.abs(x)
    t = 1.0 / (1.0 + 0.5 * z)
    poly = -1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 + t * (
        -0.18628806 + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (
            -0.82215223 + t * 0.17087277))))))))
    tail = t * np.exp(-z * z + poly)
    return np.where(x >= 0, tail, 2.0 - tail)


def _uuids(rng: np.random.Generator, n: int) -> np.ndarray:
    """(n, 36) uint8: random version-4 UUIDs as lower-case ASCII."""
    raw = rng.integers(0, 256, (n, 16), dtype=np.uint8)
    raw[:, 6] = (raw[:, 6] & 0x0F) | 0x40
    raw[:, 8] = (raw[:, 8] & 0x3F) | 0x80
    nibbles = np.empty((n, 32), dtype=np.uint8)
    nibbles[:, 0::2] = raw >> 4
    nibbles[:, 1::2] = raw & 0x0F
    out = np.full((n, 36), ord("-"), dtype=np.uint8)
    out[:, _UUID_HEX_COLUMNS] = _HEX[nibbles]
    return out


def _chunk_bytes(
    rng: np.random.Generator,
    catalog: _Catalog,
    month: _Month,
    rows: int,
    lo: int,
    hi: int,
    share_lo: float,
    share_hi: float,
    flags: _Flags,
    shape: MonthShape,
) -> list[np.ndarray]:
    """`rows` CSV lines (uint8 pieces, newline-terminated) with times in [lo, hi] seconds of the
    month."""
    # --- sessions: user, start time, events
    lengths = _sessions(rng, rows, shape.mean_session_events)
    n_sessions = len(lengths)
    starts = np.cumsum(lengths) - lengths
    session_of_row = np.repeat(np.arange(n_sessions), lengths)
    first = np.zeros(rows, dtype=bool)
    first[starts] = True

    start_second = _seconds_at(month, share_lo + rng.random(n_sessions) * (share_hi - share_lo))
    # at least a second between two events of a session: identical rows are then never an accident
    gaps = 1.0 + rng.exponential(_MEAN_EVENT_GAP_SECONDS - 1.0, rows)
    gaps[first] = 0.0
    elapsed = np.cumsum(gaps)
    elapsed -= np.repeat(elapsed[starts], lengths)
    elapsed = elapsed.astype(np.int64)
    # a session that would run past the chunk's slice starts as much earlier as it would
    # overrun (no pile-up of clipped events on the slice's last second); only a session longer
    # than the slice is clipped
    latest_start = hi - elapsed[starts + lengths - 1]
    start_second = np.where(
        start_second > latest_start, np.maximum(2 * latest_start - start_second, lo), start_second
    )
    seconds = np.clip(start_second[session_of_row] + elapsed, lo, hi)

    # "user_id,uuid\n" of every session
    if shape.user_activity == "zipf":
        user_rank = _zipf_ranks(rng, n_sessions, shape.users, shape.user_skew)
    else:
        user_rank = _lognormal_ranks(rng, n_sessions, shape.users, shape.user_skew)
    user_id = _USER_ID_BASE + (user_rank * _USER_ID_MULTIPLIER + month.user_salt) % _USER_ID_SPAN
    tail = np.empty((n_sessions, _TAIL_WIDTH), dtype=np.uint8)
    tail[:, :9] = (user_id[:, None] // _POW10_9) % 10 + 48
    tail[:, 9] = ord(",")
    tail[:, 10:46] = _uuids(rng, n_sessions)
    tail[:, 46] = ord("\n")

    # --- products: a fresh pick, or the product of the event before in the same session
    fresh = first | (rng.random(rows) >= _SAME_PRODUCT_AGAIN)
    picked = _zipf_ranks(rng, rows, _N_PRODUCTS, _PRODUCT_ZIPF_OFFSET)
    product = picked[np.maximum.accumulate(np.where(fresh, np.arange(rows), 0))]

    u = rng.random(rows)
    event = (u >= _EVENT_CUTS[0]).astype(np.intp) + (u >= _EVENT_CUTS[1])

    # --- time order (ties keep session order), then defects on the ordered rows
    order = np.sort(seconds * rows + np.arange(rows)) % rows
    empty_user = rng.random(rows) < _EMPTY_USER_ID_SHARE
    empty_session = rng.random(rows) < _EMPTY_SESSION_SHARE
    duplicate = rng.random(rows) < shape.duplicate_share
    duplicate[0] = False
    if flags.need_duplicate and rows >= 2 and not duplicate.any():
        duplicate[int(rng.integers(1, rows))] = True
    if duplicate.any():
        flags.need_duplicate = False
    if flags.need_empty_user:
        if not (empty_user & ~duplicate).any():
            originals = np.flatnonzero(~duplicate)
            empty_user[originals[int(rng.integers(0, len(originals)))]] = True
        flags.need_empty_user = False
    # a duplicate repeats the row before it (itself possibly a copy): exact copies, adjacent
    source = np.maximum.accumulate(np.where(duplicate, 0, np.arange(rows)))
    take = order[source]
    empty_user = empty_user[source]
    empty_session = empty_session[source]

    seconds = seconds[take]
    product = product[take]
    event = event[take]
    session = session_of_row[take]
    day, time_of_day = np.divmod(seconds, 86_400)
    cents = catalog.base_cents[product]
    # prices move a little from day to day for some products (discounts), as in the real data
    h = (product * 2_654_435_761 + (day + month.price_salt) * 97_531) % 1000
    cents = np.where(h < 120, (cents * (850 + h * 150 // 120) + 500) // 1000, cents)

    # --- render: fixed-width NUL-padded fields in one matrix, then drop the NULs. The fields are
    # written through a structured view of the matrix, one fixed-size item per row and field;
    # blocks small enough to stay in the CPU cache.
    layout = _row_layout(catalog.product_bytes.shape[1])
    o_tail = layout.fields["tail"][1]
    template = _row_template(month.prefix, layout)
    tables = (
        ("day", _as_items(_TWO_DIGITS), day + 1),
        ("time", _as_items(_time_of_day_table()), time_of_day),
        ("event", _as_items(_EVENT_BYTES), event),
        ("product", _as_items(catalog.product_bytes), product),
        ("price", _as_items(_price_table()), cents),
        ("tail", _as_items(tail), session),
    )
    block = np.empty((min(rows, _RENDER_ROWS), layout.itemsize), dtype=np.uint8)
    pieces = []
    for b0 in range(0, rows, _RENDER_ROWS):
        b1 = min(b0 + _RENDER_ROWS, rows)
        out = block[: b1 - b0]
        out[:] = template
        fields = out.view(layout).reshape(b1 - b0)
        for name, table, index in tables:
            fields[name] = table[index[b0:b1]]
        out[np.flatnonzero(empty_user[b0:b1]), o_tail : o_tail + 9] = 0
        out[np.flatnonzero(empty_session[b0:b1]), o_tail + 10 : o_tail + 46] = 0
        flat = out.reshape(-1)
        pieces.append(flat[flat != 0])
    return pieces


def _as_items(table: np.ndarray) -> np.ndarray:
    """A C-contiguous (n, w) uint8 table as n opaque w-byte items (one copy per row on gather)."""
    return np.ascontiguousarray(table).view(f"V{table.shape[1]}").reshape(len(table))


@functools.lru_cache(maxsize=8)
def _row_layout(product_width: int) -> np.dtype:
    """Byte layout of one rendered row: `YYYY-MM-dd HH:MM:SS UTC,event,product..,price,tail`."""
    o_product = 33
    o_price = o_product + product_width
    o_tail = o_price + _PRICE_WIDTH
    return np.dtype(
        {
            "names": ["day", "time", "event", "product", "price", "tail"],
            "formats": [
                "V2", "V8", "V8", f"V{product_width}", f"V{_PRICE_WIDTH}", f"V{_TAIL_WIDTH}"
            ],
            "offsets": [8, 11, 24, o_product, o_price, o_tail],
            "itemsize": o_tail + _TAIL_WIDTH,
        }
    )


def _row_template(prefix: bytes, layout: np.dtype) -> np.ndarray:
    template = np.zeros(layout.itemsize, dtype=np.uint8)
    template[:24] = np.frombuffer(prefix + b"dd HH:MM:SS UTC,", dtype=np.uint8)
    template[32] = ord(",")  # after the NUL-padded event type
    return template


@functools.lru_cache(maxsize=1)
def _time_of_day_table() -> np.ndarray:
    """(86400, 8) uint8: "HH:MM:SS" for every second of a day."""
    s = np.arange(86_400)
    table = np.empty((86_400, 8), dtype=np.uint8)
    table[:, 0:2] = _TWO_DIGITS[s // 3600]
    table[:, 2] = ord(":")
    table[:, 3:5] = _TWO_DIGITS[s // 60 % 60]
    table[:, 5] = ord(":")
    table[:, 6:8] = _TWO_DIGITS[s % 60]
    table.setflags(write=False)
    return table


@functools.lru_cache(maxsize=1)
def _price_table() -> np.ndarray:
    """(max cents + 1, 8) uint8: "2574.07," for every price in cents, NUL-padded on the left."""
    cents = np.arange(round(_MAX_PRICE * 100) + 1, dtype=np.int64)
    units = cents // 100
    digits = (units[:, None] // _POW10_4) % 10 + 48
    keep = units[:, None] >= _POW10_4
    keep[:, -1] = True
    table = np.empty((len(cents), _PRICE_WIDTH), dtype=np.uint8)
    table[:, :4] = np.where(keep, digits, 0)
    table[:, 4] = ord(".")
    table[:, 5:7] = _TWO_DIGITS[cents % 100]
    table[:, 7] = ord(",")
    table.setflags(write=False)
    return table


# ---------------------------------------------------------------------------------------------
# Files

# Called with (rows written so far, rows of the month) after each chunk reaches the file.
ProgressCallback = Callable[[int, int], None]


class Progress:
    """Reports how far a month's file has got, on stderr by default, at most once every
    `interval` seconds: ``2019-Oct.csv: 12,600,000 of 42,400,000 rows (30 %), 3,100,000 rows/s``.

    Why throttled by time and not by rows: a month written in less than `interval` seconds
    (the 100,000-row default) prints nothing, while a full-size month, which takes minutes, says
    every few seconds that it is moving and how fast. Once it has said anything, it also says
    when the month is complete.
    """

    def __init__(
        self,
        name: str,
        stream: TextIO | None = None,
        interval: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self.stream = stream
        self.interval = interval
        self.clock = clock
        self.started = self.last = clock()
        self.reported = False

    def __call__(self, written: int, total: int) -> None:
        now = self.clock()
        complete = written >= total
        if now - self.last < self.interval and not (complete and self.reported):
            return
        self.last = now
        self.reported = True
        percent = 100 * written // total if total else 100
        rate = written / (now - self.started) if now > self.started else 0.0
        print(
            f"{self.name}: {written:,} of {total:,} rows ({percent} %), {rate:,.0f} rows/s",
            file=self.stream if self.stream is not None else sys.stderr,
            flush=True,
        )


def _check_int(name: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}.")
    return int(value)


def _write_all(sink: BinaryIO, pieces: list[np.ndarray]) -> None:
    for piece in pieces:
        sink.write(piece)


def _write_rows(
    sink: BinaryIO,
    rows: int,
    chunk_rows: int,
    rng: np.random.Generator,
    catalog: _Catalog,
    month: _Month,
    shape: MonthShape,
    progress: ProgressCallback | None = None,
) -> None:
    """The header and `rows` rows, chunk by chunk; each chunk covers the slice of the month's
    seconds that matches its share of the rows, so times never go back across chunks. `progress`
    hears the rows written so far each time a chunk is on disk."""
    flags = _Flags(need_duplicate=rows >= 1_000, need_empty_user=rows >= 1_000)
    sink.write(SOURCE_HEADER.encode("ascii") + b"\n")
    last_second = month.seconds - 1
    # One writer thread overlaps the file I/O (and gzip) with generating the next chunk; at most
    # one chunk waits to be written, so memory stays bounded.
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="sample-data-writer") as writer:
        pending = None
        done = lo = pending_done = 0
        while done < rows:
            n = min(chunk_rows, rows - done)
            share_lo, share_hi = done / rows, (done + n) / rows
            if done + n == rows:
                hi = last_second
            else:
                hi = max(lo, min(int(_seconds_at(month, share_hi)), last_second))
            pieces = _chunk_bytes(
                rng, catalog, month, n, lo, hi, share_lo, share_hi, flags, shape
            )
            if pending is not None:
                pending.result()
                if progress is not None:
                    progress(pending_done, rows)
            pending = writer.submit(_write_all, sink, pieces)
            del pieces
            done += n
            pending_done = done
            lo = hi
        if pending is not None:
            pending.result()
            if progress is not None:
                progress(pending_done, rows)


def generate_month(
    month: str,
    rows: int,
    out_dir: str | os.PathLike[str],
    *,
    seed: int = 0,
    gzip: bool = False,
    name_style: str = "mon",
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    progress: ProgressCallback | None = None,
    shape: str = DEFAULT_SHAPE,
) -> Path:
    """Write `rows` events of `month` (``YYYY-MM``) to `out_dir` and return the file's path.

    Streams `chunk_rows` rows at a time and writes through a hidden temporary file in
    `out_dir` that is renamed into place when complete. ``rows=0`` writes only the header.
    `progress(rows_written, rows)` is called after each chunk reaches the file (see `Progress`).
    `shape` names the data's shape, a key of `SHAPES` (``"sample"`` or ``"wide"``); an unknown
    name raises ValueError listing the known ones.
    """
    first_day = parse_month_key(month)
    year, number = first_day.year, first_day.month
    _check_name_style(name_style)
    month_shape = _month_shape(shape)
    rows = _check_int("rows", rows, 0)
    seed = _check_int("seed", seed, 0)
    # a chunk of at least two rows can always hold the guaranteed duplicate
    chunk_rows = max(_check_int("chunk_rows", chunk_rows, 1), 2)

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    final = out_dir / file_name_for(month, name_style, gzip)

    catalog = _catalog(seed, month_shape.brands, month_shape.brand_zipf_offset)
    rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, year, number])))
    state = _month_state(year, number, seed, rng)

    fd, tmp_name = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".tmp", dir=out_dir)
    tmp = Path(tmp_name)
    try:
        with open(fd, "wb") as raw:
            sink = (
                gzip_module.GzipFile(filename="", mode="wb", fileobj=raw, compresslevel=1, mtime=0)
                if gzip
                else raw
            )
            try:
                _write_rows(sink, rows, chunk_rows, rng, catalog, state, month_shape, progress)
            finally:
                if sink is not raw:
                    sink.close()
            raw.flush()
            os.fsync(raw.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return final


# ---------------------------------------------------------------------------------------------
# Command line


def _month_arg(value: str) -> str:
    try:
        parse_month_key(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return value


def _non_negative_int(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {value!r}") from None
    if number < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {number}")
    return number


def _non_negative_float(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {value!r}") from None
    if not number >= 0:  # also rejects nan
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return number


def _positive_int(value: str) -> int:
    number = _non_negative_int(value)
    if number == 0:
        raise argparse.ArgumentTypeError("must be >= 1")
    return number


def _has_csv(directory: Path) -> bool:
    return directory.is_dir() and any(
        p.is_file() and (p.name.endswith(".csv") or p.name.endswith(".csv.gz"))
        for p in directory.iterdir()
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="medallion-sample-data",
        description="Write seeded synthetic REES46-format monthly event CSVs.",
    )
    parser.add_argument("--out", required=True, type=Path, help="directory to write the files to")
    parser.add_argument(
        "--month", required=True, action="append", type=_month_arg,
        help="month to generate, YYYY-MM; repeat for several",
    )
    parser.add_argument(
        "--rows", type=_non_negative_int, default=DEFAULT_ROWS,
        help=f"rows per month (default {DEFAULT_ROWS})",
    )
    parser.add_argument("--seed", type=_non_negative_int, default=0, help="random seed (default 0)")
    parser.add_argument("--gzip", action="store_true", help="write .csv.gz")
    parser.add_argument(
        "--name-style", choices=NAME_STYLES, default="mon",
        help="2019-Oct.csv (mon, as published) or 2019-10.csv (numeric)",
    )
    parser.add_argument(
        "--shape", choices=tuple(SHAPES), default=DEFAULT_SHAPE,
        help=f"shape of the data (default {DEFAULT_SHAPE}): sample, or wide (October 2019's "
        "user and brand cardinalities at full size)",
    )
    parser.add_argument(
        "--chunk-rows", type=_positive_int, default=DEFAULT_CHUNK_ROWS,
        help=f"rows generated per chunk (default {DEFAULT_CHUNK_ROWS})",
    )
    parser.add_argument(
        "--if-empty", action="store_true",
        help="do nothing when the directory already holds a *.csv or *.csv.gz file",
    )
    parser.add_argument(
        "--progress-seconds", type=_non_negative_float, default=2.0,
        help="report progress on stderr at most this often (default 2; 0: after every chunk)",
    )
    args = parser.parse_args(argv)

    if args.if_empty and _has_csv(args.out):
        print(f"{args.out} already contains CSV files; nothing generated.")
        return 0
    for month in args.month:
        progress = Progress(
            file_name_for(month, args.name_style, args.gzip), interval=args.progress_seconds
        )
        path = generate_month(
            month, args.rows, args.out, seed=args.seed, gzip=args.gzip,
            name_style=args.name_style, chunk_rows=args.chunk_rows, progress=progress,
            shape=args.shape,
        )
        print(f"{path}\t{args.rows} rows")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
