"""Facility changes from learned structure maps (railwatch.analytics.changes.structures)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from affine import Affine
from pyproj import CRS
from shapely.geometry import box

import test_changes_synth as S
from railwatch.analytics.changes import describe_change, find_changes
from railwatch.analytics.changes.find import Change, UsedImage, _supported
from railwatch.analytics.changes.structures import (
    ABSENT,
    PRESENT,
    UNCLEAR,
    StructureModel,
    StructureRules,
    change_step,
    flank,
    leaning,
    map_sides,
    merge_pieces,
    shipped_model,
    structure_changes,
)
from railwatch.analytics.coregister import Grid
from railwatch.errors import InputError
from railwatch.types import Site

P, A, M = PRESENT, ABSENT, UNCLEAR


# ------------------------------------------------------------------- the history rule
def test_change_step_reads_a_history():
    # absent, absent, then present twice: new at step 2, bracket (1, 2)
    assert change_step([A, A, P, P], 2, "new", 2, 0.5) == (1, 2)
    # the wrong step, or the wrong sign, says nothing
    assert change_step([A, A, P, P], 1, "new", 2, 0.5) is None
    assert change_step([A, A, P, P], 2, "lost", 2, 0.5) is None
    # one odd image neither creates a structure ...
    assert change_step([A, A, P, A, A], 2, "new", 2, 0.5) is None
    # ... nor hides one: unknown images are skipped, the bracket is the images that saw it
    assert change_step([A, None, P, None, P], 1, "new", 2, 0.5) == (0, 2)
    # an unclear image inside the window spoils it; the persistence window needs images
    assert change_step([A, A, M, P], 2, "new", 2, 0.5) is None
    assert change_step([A, A, P], 2, "new", 2, 0.5) is None
    assert change_step([A, A, P], 2, "new", 1, 0.5) == (1, 2)
    # later images must mostly agree
    assert change_step([A, P, P, A, A, A], 1, "new", 2, 0.5) is None
    assert change_step([A, P, P, P, A, P], 1, "new", 2, 0.5) == (0, 1)
    # removals the other way round; nothing seen before: no bracket
    assert change_step([P, P, A, A], 2, "lost", 2, 0.5) == (1, 2)
    assert change_step([None, None, A, A], 2, "lost", 2, 0.5) is None


def test_change_step_lets_a_place_partly_taken_long_before_settle_first():
    # an old shed on part of a new warehouse's ground: unclear, then empty twice, built
    old_shed = [M, None, A, A, P, P]
    assert change_step(old_shed, 4, "new", 2, 0.5) is None  # strict: every earlier one
    assert change_step(old_shed, 4, "new", 2, 0.5, settled=2) == (3, 4)
    # only one empty image just before is not settled; a structure before is not unclear
    assert change_step([M, M, A, P, P], 3, "new", 2, 0.5, settled=2) is None
    assert change_step([P, A, A, P, P], 3, "new", 2, 0.5, settled=2) is None
    # removals the other way round: half seen while it was built, then standing twice
    assert change_step([M, P, P, A, A], 3, "lost", 2, 0.5, settled=2) == (2, 3)
    assert change_step([A, P, P, A, A], 3, "lost", 2, 0.5, settled=2) is None


# -------------------------------------------------------- regions from constructed maps
@dataclass
class _Img:
    """The parts of the change finder's prepared image that structure_changes reads."""

    info: UsedImage
    rgb: np.ndarray
    usable: np.ndarray
    occluded: np.ndarray
    bare: np.ndarray | None = None


GRID = Grid(CRS.from_epsg(32652), Affine(1.0, 0, 500_000.0, 0, -1.0, 4_700_100.0), 100, 100)
SITE = Site("t", "t", box(129, 42, 130, 43), {})


def _month(i: int) -> dt.datetime:
    """The date of image ``i`` of a constructed series: the first of month ``i + 1``."""
    return dt.datetime(2021, 1 + i, 1, tzinfo=dt.UTC)


#: The constructed images' bare ground (RGB 0..1): the shipped network, asked to look again
#: at a lone witness (``lone_absent_turned``), must see plain ground, not a black void.
GROUND = np.array([0.45, 0.42, 0.36])


def _series(n: int, snow: set[int] | None = None) -> list[_Img]:
    out = []
    for i in range(n):
        occ = np.zeros((100, 100), bool)
        if snow and i in snow:
            occ[:] = True
        when = _month(i)
        rgb = np.broadcast_to(GROUND, (100, 100, 3)).copy()
        out.append(_Img(UsedImage(f"im{i}.tif", when, 0.5, 1.0), rgb,
                        np.ones((100, 100), bool), occ))
    return out


#: Where the constructed maps put their structure: rows 30..50, columns 40..65 of GRID.
RECT = (slice(30, 50), slice(40, 65))


def _maps(n: int, present: list[bool], rect=RECT) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    maps = []
    for i in range(n):
        m = rng.uniform(0.0, 0.005, (100, 100)).astype(np.float32)  # a network sure of ground
        if present[i]:
            m[rect] = 0.95
        maps.append(m)
    return maps


def _dated(changes: list[Change]) -> list[tuple[str, int, int]]:
    """(kind, month last absent, month first seen) of each change."""
    return [(c.kind, c.last_absent.month, c.first_seen.month) for c in changes]


def _found(used: list[_Img], maps: list[np.ndarray], **kw) -> list[tuple[str, int, int]]:
    """:func:`_dated` of the changes structure_changes finds."""
    return _dated(structure_changes(used, SITE, GRID, maps=maps, **kw))


def _snowed_after_a_roof(bare: bool) -> tuple[list[_Img], list[np.ndarray]]:
    """Five images: a roof in the first two, gone in the clear third (but the network
    not sure enough of that for the image to stand alone), and deep snow in the last two
    (their ground all bare, or all under snow) where the network sees nothing, as over a
    roof under snow: only they could confirm a removal."""
    used = _series(5, snow={3, 4})
    for p in used[3:]:
        p.bare = np.full((100, 100), bare)
    maps = _maps(5, [True, True, False, False, False])
    maps[2][RECT] = 0.03  # "absent" (< 0.08), not sure (lone_absent)
    return used, maps


def test_a_removal_only_one_later_image_can_see_stands_on_it_when_sure():
    # A roof in the first two images, gone in the clear third; the last two are under
    # snow and never can confirm it: the third, sure of the empty place, stands alone.
    used = _series(5, snow={3, 4})
    maps = _maps(5, [True, True, False, False, False])
    (gone,) = structure_changes(used, SITE, GRID, maps=maps)
    assert _dated([gone]) == [("removed structure", 2, 3)] and gone.seen_in == 1
    assert "seen in one later image only" in describe_change(gone)  # the brief says so
    # not when it is less than sure, or looks again turned and half sees the roof
    half = [m.copy() for m in maps]
    half[2][RECT] = 0.03
    assert _found(used, half) == []

    seen_turned = _series(5, snow={3, 4})
    seen_turned[2].rgb[RECT] = 0.95
    assert _found(seen_turned, maps, model=_StubModel(_lower_half)) == []
    # not when only one earlier image saw the roof, however sure of it
    once = _series(5, snow={0, 3, 4})
    sure = [m.copy() for m in maps]
    sure[1][RECT] = 0.99  # above lone_present
    assert _found(once, sure) == []
    # not when a later snowy image still sees the roof through the snow
    through = [m.copy() for m in maps]
    through[3][RECT] = 0.95
    assert _found(used, through) == []
    # and not from the last image: a later one may yet confirm it (or not)
    last = _series(4, snow={2})
    assert _found(last, _maps(4, [True, True, False, False])) == []
    # with two clear images after it, the usual rule: seen in both
    (both,) = structure_changes(_series(5), SITE, GRID, maps=maps)
    assert both.seen_in == 2 and "one later image" not in describe_change(both)


def test_a_new_structure_is_found_and_dated():
    used = _series(5)
    maps = _maps(5, [False, False, True, True, True])
    ch = structure_changes(used, SITE, GRID, persist=2, maps=maps)
    assert [c.kind for c in ch] == ["new structure"]
    c = ch[0]
    assert c.last_absent.month == 2 and c.first_seen.month == 3
    assert c.area_m2 == pytest.approx(20 * 25, rel=0.1)
    # the footprint is where the map put it (rows 30..50 from the top = northings)
    x0, y0, x1, y1 = c.geometry.bounds
    assert (x0, x1) == pytest.approx((500_040, 500_065), abs=1.5)
    assert (y0, y1) == pytest.approx((4_700_050, 4_700_070), abs=1.5)
    assert c.score > 0.8


def test_a_removed_structure_and_nothing_from_one_odd_image():
    used = _series(5)
    assert _found(used, _maps(5, [True, True, False, False, False])) == [
        ("removed structure", 2, 3)]
    odd = structure_changes(used, SITE, GRID, maps=_maps(5, [False, True, False, False, False]))
    assert odd == []
    blip = structure_changes(used, SITE, GRID, maps=_maps(5, [False, False, True, False, False]))
    assert blip == []


def test_one_earlier_image_must_be_sure_of_the_absence():
    # With only the first image before it, a new structure needs that image to be sure
    # the place was empty: a roof the network half-misses once is not construction.
    used = _series(4)
    maps = _maps(4, [False, True, True, True])
    maps[0][RECT] = 0.0
    assert _found(used, maps) == [("new structure", 1, 2)]
    maps[0][RECT] = 0.04  # "absent" (< 0.08), but not sure
    assert _found(used, maps) == []


class _StubModel(StructureModel):
    """A stand-in structure model: ``see(rgb)`` is the map."""

    def __init__(self, see) -> None:
        self.see = see

    def predict(self, rgb: np.ndarray, gsd_m: float = 1.0) -> np.ndarray:
        return np.asarray(self.see(rgb), np.float32)


def _lower_half(rgb: np.ndarray) -> np.ndarray:
    """A stand-in network's map: the bright roofs of the lower half of what it is shown."""
    out = (rgb[..., 0] > 0.9).astype(np.float32)
    out[: out.shape[0] // 2] = 0.0
    return out


def test_a_lone_witness_must_stay_sure_when_it_looks_again_turned():
    # The maps missed the roof in the only earlier image; a network that sees only the
    # lower half of what it is shown (this stand-in) sees it there once turned or mirrored.
    model = _StubModel(_lower_half)
    maps = _maps(4, [False, True, True, True])
    used = _series(4)
    assert _found(used, maps, model=model) == [("new structure", 1, 2)]  # nothing there
    used[0].rgb[RECT] = 0.95  # the roof stood there all along
    assert _found(used, maps, model=model) == []


def _edge_change(kind: str, first: int, last: int) -> Change:
    # an outline over RECT
    geom = box(500_040, 4_700_050, 500_065, 4_700_070)
    return Change(geom, GRID.crs, kind, _month(first), _month(last), geom.area, None, 0.5)


def test_map_sides_reads_both_sides_of_an_edge_change():
    used = _series(5)
    maps = _maps(5, [False, False, True, True, True])
    new = _edge_change("new structure", first=2, last=1)
    built, other = map_sides(new, used, maps, GRID)
    assert built == pytest.approx(0.95) and other < 0.01
    assert _supported(new, used, maps, GRID)
    # the same outline where the maps see ground after it (a changed shadow or patch)
    empty = _maps(5, [False] * 5)
    assert map_sides(new, used, empty, GRID)[0] < 0.01
    assert not _supported(new, used, empty, GRID)
    # a removal is read on the images up to it: the roof stood there in 0 and 1
    lost = _edge_change("removed structure", first=2, last=1)
    built, other = map_sides(lost, used, _maps(5, [True, True, False, False, False]), GRID)
    assert built == pytest.approx(0.95) and other < 0.01
    assert not _supported(lost, used, maps, GRID)
    # a roof the maps see on both sides is a standing building's outline seen anew
    standing = _maps(5, [True] * 5)
    assert map_sides(new, used, standing, GRID) == (pytest.approx(0.95), pytest.approx(0.95))
    assert not _supported(new, used, standing, GRID)
    assert not _supported(lost, used, standing, GRID)
    # kinds the maps do not know, and places no built-side image shows, stand as they are
    assert _supported(_edge_change("new track", first=2, last=1), used, empty, GRID)
    hidden = _series(5, snow={2, 3, 4})
    assert map_sides(new, hidden, empty, GRID)[0] is None
    assert _supported(new, hidden, empty, GRID)


def test_a_strip_along_a_standing_roof_is_the_roof_leaning():
    # A warehouse (RECT) stands in all five images; from the third on the maps also see a
    # 5 m strip along its east side, as when a tall roof leans further with the view.
    used = _series(5)
    maps = _maps(5, [True] * 5)
    for m in maps[2:]:
        m[30:50, 65:70] = 0.95
    (strip,) = structure_changes(used, SITE, GRID, maps=maps)
    width, standing, unseen = flank(strip, used, maps, GRID)
    assert width <= 8 and standing > 0.2 and unseen == 0
    assert leaning(strip, used, maps, GRID)
    # the same strip with no roof beside it is a new structure ...
    alone = _maps(5, [False] * 5)
    for m in alone[2:]:
        m[30:50, 65:70] = 0.95
    assert flank(strip, used, alone, GRID)[1] == 0 and not leaning(strip, used, alone, GRID)
    # ... and so is a building 12 m wide beside the warehouse
    wide = _maps(5, [True] * 5)
    for m in wide[2:]:
        m[30:50, 65:77] = 0.95
    (annex,) = structure_changes(used, SITE, GRID, maps=wide)
    assert flank(annex, used, wide, GRID)[0] > 8 and not leaning(annex, used, wide, GRID)
    # a strip beside ground no image shows (the images end there) cannot be told apart
    cut = _series(5)
    for p in cut:
        p.usable[:, 71:] = False
    assert flank(strip, cut, alone, GRID)[2] > 0.2 and leaning(strip, cut, alone, GRID)


def test_a_thin_platform_seen_a_little_off_later_is_not_a_new_strip_beside_it():
    # A 5 m platform stands throughout; the last three images are 2-3 m off (images align
    # to about 2 px) and their maps take in a strip of its shadow: the maps say "new"
    # along it, and not one cell of the ring around that strip is under the platform on
    # both sides at once.
    maps = _maps(5, [False] * 5)
    for m in maps[:2]:
        m[40:45, 30:70] = 0.95
    for m, top in zip(maps[2:], (42, 43, 43), strict=True):
        m[top:51, 30:70] = 0.95
    used = _series(5)
    (strip,) = structure_changes(used, SITE, GRID, maps=maps)
    assert flank(strip, used, maps, GRID, StructureRules(lean_shift_m=0.0))[1] < 0.05
    assert leaning(strip, used, maps, GRID)  # the platform, a little off
    # a new shed 3 m from a platform that stands where it stood is still a new shed
    apart = _maps(5, [False] * 5)
    for m in apart:
        m[40:45, 30:70] = 0.95
    for m in apart[2:]:
        m[48:54, 30:70] = 0.95
    (shed,) = structure_changes(used, SITE, GRID, maps=apart)
    assert not leaning(shed, used, apart, GRID)


def test_pieces_of_one_platform_are_one_change_and_neighbours_stay_two():
    # A 10 m wide platform the maps cut on one line of unsure cells: two pieces, 1 m apart,
    # one bracket. They are one change of both pieces' area.
    def piece(x0: float, x1: float, y0: float = 0.0, y1: float = 10.0, first: int = 3):
        geom = box(500_000 + x0, 4_700_000 + y0, 500_000 + x1, 4_700_000 + y1)
        return Change(geom, GRID.crs, "new structure", _month(first), _month(first - 1),
                      geom.area, None, 0.9, seen_in=2)

    (one,) = merge_pieces([piece(0, 250), piece(251, 420)])
    assert one.area_m2 == pytest.approx(4200 - 10) and one.cues["pieces"] == 2
    assert one.geometry.length == pytest.approx(2 * (420 + 10), rel=0.01)  # the gap closed
    # two warehouses built side by side in one bracket stay two (together twice as wide)
    assert len(merge_pieces([piece(0, 60, 0, 30), piece(0, 60, 31, 61)])) == 2
    # and so do pieces of different brackets, or further apart than a line of cells
    assert len(merge_pieces([piece(0, 250), piece(251, 420, first=5)])) == 2
    assert len(merge_pieces([piece(0, 250), piece(254, 420)])) == 2


def test_bare_ground_in_deep_snow_shows_a_place_was_empty_and_nothing_more():
    # The only earlier image is deep snow (occluded everywhere), but the place lay bare.
    used = _series(4, snow={0})
    maps = _maps(4, [False, True, True, True])
    maps[0][RECT] = 0.0
    assert _found(used, maps) == []
    used[0].bare = np.ones((100, 100), bool)
    assert _found(used, maps) == [("new structure", 1, 2)]
    # A network that sees nothing on "bare" ground in snowy images after a roof stood
    # (a roof under snow) reports no removal.
    assert _found(*_snowed_after_a_roof(bare=True)) == []


def test_deep_snow_shows_a_building_sized_place_was_empty_but_not_a_platform_sized_one():
    # The only earlier image is deep snow lying over the place itself (no bare ground):
    # a network sure of nothing there says the place was empty before a new building ...
    used = _series(4, snow={0})
    used[0].bare = np.zeros((100, 100), bool)
    maps = _maps(4, [False, True, True, True])
    maps[0][RECT] = 0.0
    found = structure_changes(used, SITE, GRID, maps=maps)
    assert _dated(found) == [("new structure", 1, 2)]
    assert found[0].cues["through_snow"] == 1 and found[0].cues["width_m"] >= 19
    # ... but not before a structure as narrow as a platform, which snow hides whole
    narrow = (slice(30, 34), slice(20, 80))  # 4 m x 60 m
    maps = _maps(4, [False, True, True, True], rect=narrow)
    assert StructureRules().snow_min_width_m > 4
    assert _found(used, maps) == []
    # nor where the network half-sees something through the snow
    maps = _maps(4, [False, True, True, True])
    maps[0][RECT] = StructureRules().snow_absent + 0.01
    assert _found(used, maps) == []
    # and never after the step: a snowy image that sees nothing right after a new roof
    # (a roof under snow) widens the bracket instead of dating the roof after it ...
    used = _series(5, snow={2})
    used[2].bare = np.zeros((100, 100), bool)
    assert _found(used, _maps(5, [False, False, False, True, True])) == [
        ("new structure", 2, 4)]
    # ... and never says a structure is gone
    assert _found(*_snowed_after_a_roof(bare=False)) == []


def test_a_narrow_region_is_judged_on_the_cells_clear_images_showed():
    # A 4 m wide new structure: deep snow over all of it in the first image, the next two
    # show only its western 16 m. Cells only snow saw empty do not count for a region this
    # narrow, so it is judged on the part the clear images showed (all of it there).
    used = _series(5, snow={0})
    used[0].bare = np.zeros((100, 100), bool)
    for p in used[1:3]:
        p.usable[:, 36:] = False
    narrow = (slice(30, 34), slice(20, 60))
    maps = _maps(5, [False, False, False, True, True], rect=narrow)
    found = structure_changes(used, SITE, GRID, maps=maps)
    assert _dated(found) == [("new structure", 3, 4)]
    assert found[0].cues["through_snow"] == 0


def test_one_earlier_image_must_be_sure_of_a_removed_roof():
    # A removal that only the first image attests needs it sure of the roof.
    used = _series(4)
    maps = _maps(4, [True, False, False, False])
    maps[0][RECT] = 0.99
    assert _found(used, maps) == [("removed structure", 1, 2)]
    maps[0][RECT] = 0.9  # "present" (> 0.6) but a half-seen shed
    assert _found(used, maps) == []
    # with two earlier images saying so it stands
    used = _series(5)
    maps = _maps(5, [True, True, False, False, False])
    maps[0][RECT] = maps[1][RECT] = 0.9
    assert _found(used, maps) == [("removed structure", 2, 3)]


def test_snow_proves_presence_never_absence():
    # A snowy image that "sees" a structure neither opens a removal nor hides one built
    # later; a snowy image that sees nothing proves nothing.
    maps = _maps(5, [True, False, False, False, False])
    assert structure_changes(_series(5, snow={0}), SITE, GRID, maps=maps) == []
    maps = _maps(5, [False, False, False, True, True])
    assert _found(_series(5, snow={1, 2}), maps) == [("new structure", 1, 4)]
    # presence through snow confirms a new structure in the persistence window
    maps = _maps(5, [False, False, True, True, False])
    assert _found(_series(5, snow={3, 4}), maps) == [("new structure", 2, 3)]


def test_small_regions_are_not_looked_at():
    used = _series(4)
    maps = _maps(4, [False, False, True, True], rect=(slice(10, 16), slice(10, 16)))  # 36 m²
    assert structure_changes(used, SITE, GRID, maps=maps) == []


# ------------------------------------------------------------------ the shipped model
def test_shipped_model_sees_a_rendered_roof(tmp_path):
    from railwatch.analytics.coregister import read_on_grid, site_grid

    site = S.site()
    grid = site_grid(site, 1.0)
    path = S.write(tmp_path / "b.tif", S.with_new(), S.Conditions(seed=2), S.day(2))
    rgb, valid = read_on_grid(path, grid)
    m = shipped_model().predict(rgb)
    assert m.shape == grid.shape and m.dtype == np.float32
    assert float(m.min()) >= 0.0 and float(m.max()) <= 1.0
    from rasterio import features
    from shapely.affinity import translate

    roof = features.rasterize([(translate(box(222, 252, 258, 278), S.X0, S.Y0), 1)],
                              out_shape=grid.shape, transform=grid.transform).astype(bool)
    assert float(m[roof].mean()) > 0.7  # the roof
    far = ~features.rasterize([(translate(box(200, 230, 280, 300), S.X0, S.Y0), 1)],
                              out_shape=grid.shape, transform=grid.transform).astype(bool)
    assert float(np.median(m[far & valid])) < 0.1  # open ground, tracks, trains


def _iou_with_new(geom) -> float:
    """IoU of ``geom`` (map coordinates) with the new building of the rendered series."""
    truth = S.new_geom()
    return geom.intersection(truth).area / geom.union(truth).area


def test_structures_method_finds_the_new_building(tmp_path):
    images = S.series(tmp_path, "s", [
        S.Conditions(seed=1, trains=2),
        S.Conditions(seed=2, sun_az=160, trains=3),
        S.Conditions(seed=3, sun_az=200, sun_el=30, trains=2),
        S.Conditions(seed=4, sun_az=150, trains=1),
    ], [False, False, True, True])
    result = find_changes(images, S.site(), persist=2, method="structures")
    assert [c.kind for c in result.changes] == ["new structure"]
    c = result.changes[0]
    assert c.last_absent == S.day(2) and c.first_seen == S.day(4)
    assert _iou_with_new(c.geometry) > 0.7
    assert c.zone == "freight_handling"
    # "both" (the default) gives the same change, with the maps' outline
    both = find_changes(images, S.site(), persist=2).changes
    assert [(c.kind, c.geometry.equals(b.geometry)) for b in both] == [("new structure", True)]


def test_a_building_after_a_deep_snow_image_is_dated_from_its_bare_ground(tmp_path):
    # The only image before the building is deep snow over its west 150 m (more than a
    # quarter white: the edge method may read nothing in it), the building's ground in
    # the east bare. The maps read the empty place there and date the building.
    import rasterio

    images = S.series(tmp_path, "d", [S.Conditions(seed=k + 1, sun_az=150 + 20 * k)
                                      for k in range(4)], [False, True, True, True])
    with rasterio.open(images[0][0], "r+") as dst:
        data = dst.read()
        data[:, :, :150] = 235
        dst.write(data)
    result = find_changes(images, S.site(), persist=2, method="structures")
    assert [c.kind for c in result.changes] == ["new structure"]
    c = result.changes[0]
    assert c.last_absent == S.day(0) and c.first_seen == S.day(2)
    assert _iou_with_new(c.geometry) > 0.7


def test_unknown_method_and_missing_model(tmp_path: Path):
    with pytest.raises(InputError, match="unknown change method"):
        find_changes([("a.tif", S.day(0), None), ("b.tif", S.day(1), None)], S.site(),
                     method="magic")
    with pytest.raises(InputError, match="structure model not found"):
        StructureModel(tmp_path / "none.onnx")


def test_large_images_are_mapped_in_tiles_alike(monkeypatch):
    import railwatch.analytics.changes.structures as st

    rgb = np.random.default_rng(0).random((300, 420, 3)).astype(np.float32)
    whole = shipped_model().predict(rgb)
    monkeypatch.setattr(st, "TILE", 128)
    tiled = shipped_model().predict(rgb)
    assert tiled.shape == whole.shape
    assert np.abs(tiled - whole).max() < 0.02


# ------------------------------------------------- images aligned by their structure maps
def _blocks(shift: tuple[float, float] = (0.0, 0.0)) -> np.ndarray:
    """A constructed structure map: four buildings of different sizes, moved by ``shift``."""
    from railwatch.analytics.coregister import apply_shift

    m = np.zeros((120, 120), np.float32)
    rects = ((20, 35, 15, 50), (60, 70, 70, 78), (85, 110, 20, 32), (40, 52, 90, 112))
    for r0, r1, c0, c1 in rects:
        m[r0:r1, c0:c1] = 0.95
    return apply_shift(m, -shift[0], -shift[1])  # content moved right/down by shift


def test_a_structure_map_is_aligned_to_the_reference_map():
    from railwatch.analytics.coregister import estimate_map_shift

    al = estimate_map_shift(_blocks(), _blocks((4.3, -2.6)))
    assert al.ok and abs(al.dx - 4.3) < 0.25 and abs(al.dy + 2.6) < 0.25
    assert al.response > 0.9 and al.residual_px < 0.3
    # Buildings that are not the reference's do not align
    other = np.zeros((120, 120), np.float32)
    other[5:15, 100:115] = other[95:100, 60:110] = 0.95
    al = estimate_map_shift(_blocks(), other)
    assert not al.ok and "correlation" in al.reason




def _prepared(name: str, band: np.ndarray):
    from railwatch.analytics.changes.find import _Prepared

    ones = np.ones(band.shape, bool)
    info = UsedImage(name, _month(0), 0.5, 1.0, skipped="not aligned: too weak a correlation")
    return _Prepared(info, np.dstack([band] * 3), ones.copy(), ones.copy(),
                     np.zeros(band.shape, bool), ones.copy(), ones.copy())


def test_images_the_imagery_cannot_align_are_aligned_by_their_structure_map():
    from railwatch.analytics.changes.structures import align_by_maps

    grid = Grid(GRID.crs, GRID.transform, 120, 120)
    ref = _prepared("ref.tif", _blocks())
    ref.info.skipped = ""
    snowy = _prepared("snowy.tif", _blocks((3.0, 2.0)))
    blank = _prepared("blank.tif", np.zeros((120, 120), np.float32))
    band = _StubModel(lambda rgb: rgb[..., 0])
    late, late_maps = align_by_maps([snowy, blank], [ref], [_blocks()], grid, band)
    assert late == [snowy] and len(late_maps) == 1
    al = snowy.info.alignment
    assert al is not None and al.ok and al.via == "structure maps"
    assert abs(al.dx - 3.0) < 0.25 and abs(al.dy - 2.0) < 0.25
    assert snowy.info.skipped == ""
    # the image and its map are moved into the reference's frame
    assert np.abs(snowy.rgb[..., 0] - _blocks()).mean() < 0.02
    assert np.abs(late_maps[0] - _blocks()).mean() < 0.02
    # an image with none of the site's buildings in it stays out, and says why
    assert "nor by its structure map" in blank.info.skipped


def test_a_building_confirmed_in_an_image_only_its_structure_map_aligns(tmp_path, monkeypatch):
    # The last image is snowy and its ground edges are taken not to align (as deep snow
    # does): without it the new building has a single image after it and cannot persist;
    # aligned by its structure map it confirms the building.
    S.fail_snowy_alignment(monkeypatch)
    images = S.series(tmp_path, "m", [
        S.Conditions(seed=k + 1, sun_az=150 + 20 * k, snow=0.3 if k == 3 else 0.0,
                     shift_px=(4.0, -3.0) if k == 3 else (0.0, 0.0))
        for k in range(4)
    ], [False, False, True, True])
    result = find_changes(images, S.site(), persist=2, method="structures")
    last = result.images[3].alignment
    assert last is not None and last.via == "structure maps" and not result.images[3].skipped
    assert [(c.kind, c.last_absent, c.first_seen) for c in result.changes] == [
        ("new structure", S.day(2), S.day(4))
    ]
    # the edge method is not given such an image
    edges = find_changes(images, S.site(), persist=2, method="edges")
    assert edges.images[3].skipped.startswith("not aligned")
