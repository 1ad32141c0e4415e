"""Sun position and the geometry of shadows and off-nadir lean, in local metres.

The solar position comes from ``astral`` (NOAA solar equations). Azimuths are degrees
clockwise from north; local vectors are ``(east, north)`` metres. Grid convergence of
the UTM projection (under 2 degrees at the built-in sites) is ignored.
"""

from __future__ import annotations

import datetime as dt
import math

import numpy as np
from astral import Observer
from astral.sun import azimuth, elevation

#: Lowest sun elevation used for shadows (images are not taken at dusk).
MIN_ELEVATION_DEG = 5.0


def sun_position(when: dt.datetime, lat: float, lon: float) -> tuple[float, float]:
    """``(azimuth_deg, elevation_deg)`` of the sun at ``when`` (UTC) seen from lat/lon."""
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    obs = Observer(latitude=lat, longitude=lon, elevation=0.0)
    return float(azimuth(obs, when)), float(elevation(obs, when, with_refraction=True))


def shadow_vector(azimuth_deg: float, elevation_deg: float) -> np.ndarray:
    """Shadow offset ``(dx, dy)`` in metres per metre of object height.

    The shadow points away from the sun (azimuth + 180 deg) and its length is
    ``height / tan(elevation)``.
    """
    el = math.radians(max(elevation_deg, MIN_ELEVATION_DEG))
    az = math.radians(azimuth_deg)
    k = 1.0 / math.tan(el)
    return np.array([-math.sin(az) * k, -math.cos(az) * k])


def lean_vector(off_nadir_deg: float, sensor_azimuth_deg: float) -> np.ndarray:
    """Apparent displacement ``(dx, dy)`` of a roof per metre of height in the image.

    Tall things lean away from a sensor that looks from ``sensor_azimuth_deg``
    (clockwise from north), by ``height * tan(off_nadir)``.
    """
    k = math.tan(math.radians(off_nadir_deg))
    az = math.radians(sensor_azimuth_deg)
    return np.array([-math.sin(az) * k, -math.cos(az) * k])


def sun_unit_vector(azimuth_deg: float, elevation_deg: float) -> np.ndarray:
    """Unit vector towards the sun, ``(east, north, up)``."""
    az, el = math.radians(azimuth_deg), math.radians(max(elevation_deg, MIN_ELEVATION_DEG))
    return np.array([math.sin(az) * math.cos(el), math.cos(az) * math.cos(el), math.sin(el)])
