"""The phantom's hospitals: an explicit registry of named sites (tracer, camera, matrix, counts, case mix,
conventions and the fake identity of the institution).

Roles follow DESIGN.md section 4: one large generator center (DPD, enriched case mix), one small MDP training
center with few positives, four external test sites that differ in tracer (MDP, HMDP, HDP, DPD), collimator
(LEHR, LEGP), matrix (1024x256 at 2.26-2.4 mm, 512x128 at 4.5-4.8 mm), counts, post-filter and whether the
posterior view is stored already mirrored (``posterior_mirrored``; written into the DICOM file and manifest
so that readers can undo it).
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

from synthscan.errors import BadInputError
from synthscan.phantom.acquisition import COLLIMATORS, Camera


@dataclass(frozen=True)
class CaseMix:
    """Prevalences and demographics of a site's referrals."""

    metastasis: float  # share of patients with bone metastases
    superscan: float  # share of metastatic patients with diffuse disease
    amyloid_grades: tuple[float, float, float, float]  # Perugini 0-3
    age_mean: float = 68.0
    age_sd: float = 11.0
    female: float = 0.45
    repeat: float = 0.2  # share of patients with more than one study
    benign_rate: float = 1.0  # scales the frequency of benign findings
    follow_up_days: float = 6 * 365.25


@dataclass(frozen=True)
class Institution:
    name: str
    address: str
    stations: tuple[str, ...]
    physicians: tuple[str, ...]
    operators: tuple[str, ...]
    mrn_prefix: str
    accession_prefix: str
    surnames: tuple[str, ...]
    given_female: tuple[str, ...]
    given_male: tuple[str, ...]


@dataclass(frozen=True)
class Site:
    name: str
    role: str  # generator, training, external
    description: str
    tracer: str
    manufacturer: str
    camera_model: str
    collimator: str
    shape: tuple[int, int]
    pixel_spacing_mm: float
    counts_median: float  # anterior view
    counts_spread: float  # log-normal sigma of the anterior counts
    activity_mbq: tuple[float, float]
    uptake_minutes: tuple[float, float]
    scan_velocity_mm_s: float
    case_mix: CaseMix
    institution: Institution
    study_years: tuple[int, int] = (2014, 2023)
    gap_mm: float = 50.0
    scatter_fraction: float = 0.3
    nonuniformity: float = 0.02
    post_filter_sigma_px: float = 0.0
    posterior_mirrored: bool = False

    @property
    def key(self) -> int:
        """A stable number for seeding (the same site name always gives the same key)."""
        return zlib.crc32(self.name.encode())

    def camera(self) -> Camera:
        return Camera(self.shape, (self.pixel_spacing_mm, self.pixel_spacing_mm), COLLIMATORS[self.collimator],
                      self.gap_mm, self.scatter_fraction, 60.0, self.nonuniformity, self.key,
                      self.post_filter_sigma_px)

    @property
    def device_serial(self) -> str:
        return f"{self.key % 900000 + 100000}"

    @property
    def camera_name(self) -> str:
        return f"{self.manufacturer} {self.camera_model} {self.collimator}"

    def summary(self) -> str:
        mix = self.case_mix
        amyloid = sum(mix.amyloid_grades[2:])
        return (f"{self.name:<12} {self.role:<9} {self.tracer:<4} {self.camera_name:<38} "
                f"{self.shape[0]}x{self.shape[1]} {self.pixel_spacing_mm:.2f} mm  "
                f"{self.counts_median / 1e6:.1f} M counts/view  "
                f"post-filter {self.post_filter_sigma_px:g} px  posterior {'mirrored' if self.posterior_mirrored else 'as acquired'}  "
                f"metastasis {mix.metastasis:.0%}  amyloid>=2 {amyloid:.0%}")


_SURNAMES_A = ("Huber", "Gruber", "Wagner", "Bauer", "Pichler", "Steiner", "Moser", "Mayer", "Hofer", "Leitner",
               "Berger", "Fuchs", "Eder", "Fischer", "Schmid", "Winkler", "Weber", "Schwarz", "Maier", "Schneider")
_SURNAMES_B = ("Smith", "Jones", "Taylor", "Brown", "Williams", "Wilson", "Johnson", "Davies", "Robinson", "Wright",
               "Thompson", "Evans", "Walker", "White", "Roberts", "Green", "Hall", "Wood", "Jackson", "Clarke")
_SURNAMES_C = ("Rossi", "Russo", "Ferrari", "Esposito", "Bianchi", "Romano", "Colombo", "Ricci", "Marino", "Greco",
               "Bruno", "Gallo", "Conti", "De Luca", "Costa", "Giordano", "Mancini", "Rizzo", "Lombardi", "Moretti")
_SURNAMES_D = ("Nowak", "Kowalski", "Novak", "Svoboda", "Dvorak", "Horvath", "Kovacs", "Nagy", "Szabo", "Toth",
               "Lindqvist", "Johansson", "Andersson", "Nilsson", "Larsen", "Hansen", "Jensen", "Nielsen", "Berg", "Dahl")
_FEMALE = ("Anna", "Maria", "Elisabeth", "Ingrid", "Margaret", "Susan", "Helen", "Giulia", "Francesca", "Eva",
           "Katarzyna", "Agnieszka", "Birgit", "Karin", "Monika", "Ursula", "Joan", "Patricia", "Linda", "Greta")
_MALE = ("Johann", "Franz", "Josef", "Karl", "Peter", "John", "David", "Michael", "Robert", "Marco", "Giuseppe",
         "Luca", "Jan", "Piotr", "Tomas", "Lars", "Erik", "Anders", "Wolfgang", "Thomas")


def _institution(name, address, city_code, surnames, stations, physicians, operators) -> Institution:
    return Institution(name, address, stations, physicians, operators, city_code, city_code[:2] + "ACC",
                       surnames, _FEMALE, _MALE)


SITES: dict[str, Site] = {site.name: site for site in (
    Site(
        "aurora-dpd", "generator",
        "large academic center, DPD, enriched referrals (oncology and cardiology)",
        "DPD", "GE Healthcare", "Discovery NM/CT 670", "LEHR", (1024, 256), 2.26, 3.2e6, 0.22, (550, 750),
        (150, 210), 1.67,
        CaseMix(metastasis=0.30, superscan=0.06, amyloid_grades=(0.79, 0.07, 0.08, 0.06), age_mean=69, repeat=0.25),
        _institution("Aurora University Hospital", "Spitalgasse 23, 1090 Aurora", "AUR", _SURNAMES_A,
                     ("AUR-NM-DISC1", "AUR-NM-DISC2"), ("Huber^Claudia^^Dr.", "Leitner^Markus^^Prof."),
                     ("Eder^Sabine", "Moser^Thomas"))),
    Site(
        "birch-mdp", "training",
        "small community hospital, MDP, few positives",
        "MDP", "Siemens Healthineers", "Symbia T2", "LEHR", (1024, 256), 2.40, 1.8e6, 0.25, (600, 800),
        (150, 240), 2.0,
        CaseMix(metastasis=0.08, superscan=0.03, amyloid_grades=(0.965, 0.02, 0.01, 0.005), age_mean=66, repeat=0.1),
        _institution("Birchwood General Hospital", "12 Station Road, Birchwood BW4 7QT", "BIR", _SURNAMES_B,
                     ("BIRCH_SYMBIA",), ("Wright^Helen^^Dr.", "Evans^Robert^^Dr."), ("Hall^Joan",)),
        scatter_fraction=0.32, nonuniformity=0.025),
    Site(
        "cedar-hmdp", "external",
        "regional hospital, HMDP, LEGP, 512x128, smoothed images",
        "HMDP", "Philips", "BrightView XCT", "LEGP", (512, 128), 4.80, 1.3e6, 0.25, (500, 700), (120, 200), 2.5,
        CaseMix(metastasis=0.15, superscan=0.04, amyloid_grades=(0.90, 0.04, 0.04, 0.02), age_mean=70, repeat=0.15),
        _institution("Ospedale Cedri", "Via dei Cedri 5, 20121 Cedri", "CED", _SURNAMES_C, ("CEDRI_NM01",),
                     ("Bianchi^Francesca^^Dott.", "Ricci^Marco^^Dott."), ("Greco^Luca",)),
        scatter_fraction=0.34, post_filter_sigma_px=0.6, nonuniformity=0.03),
    Site(
        "delta-dpd", "external",
        "university clinic, DPD, LEHR, 1024x256, posterior stored mirrored",
        "DPD", "Siemens Healthineers", "Symbia Intevo", "LEHR", (1024, 256), 2.26, 2.6e6, 0.25, (600, 800),
        (160, 220), 1.67,
        CaseMix(metastasis=0.20, superscan=0.05, amyloid_grades=(0.85, 0.05, 0.06, 0.04), age_mean=71, repeat=0.2),
        _institution("Delta University Clinic", "Krankenhausstrasse 1, 8010 Delta", "DEL", _SURNAMES_A,
                     ("DELTA-INTEVO",), ("Fuchs^Birgit^^Dr.", "Schmid^Wolfgang^^Dr."), ("Weber^Karin",)),
        posterior_mirrored=True),
    Site(
        "elm-mdp", "external",
        "district hospital, MDP, LEGP, 512x128, low counts",
        "MDP", "GE Healthcare", "Infinia Hawkeye 4", "LEGP", (512, 128), 4.50, 0.8e6, 0.3, (500, 700), (120, 180),
        2.5,
        CaseMix(metastasis=0.18, superscan=0.04, amyloid_grades=(0.92, 0.03, 0.03, 0.02), age_mean=67, repeat=0.1),
        _institution("Elm Valley District Hospital", "Hospital Lane 9, Elm Valley EV1 2AB", "ELM", _SURNAMES_B,
                     ("ELM_INFINIA",), ("Thompson^David^^Dr.",), ("Green^Linda",)),
        scatter_fraction=0.35, nonuniformity=0.035),
    Site(
        "fjord-hdp", "external",
        "tertiary center, HDP, LEHR, 1024x256, high counts, filtered, posterior stored mirrored",
        "HDP", "Mediso", "AnyScan SC", "LEHR", (1024, 256), 2.40, 3.6e6, 0.2, (650, 900), (180, 240), 1.5,
        CaseMix(metastasis=0.12, superscan=0.04, amyloid_grades=(0.88, 0.04, 0.05, 0.03), age_mean=69, repeat=0.2),
        _institution("Fjord Regional Hospital", "Sjukehusvegen 4, 5021 Fjord", "FJO", _SURNAMES_D,
                     ("FJORD-ANYSCAN",), ("Lindqvist^Karin^^Dr.", "Hansen^Erik^^Dr."), ("Dahl^Greta",)),
        post_filter_sigma_px=0.8, posterior_mirrored=True),
)}


def get_site(name: str) -> Site:
    """The registered site ``name``; a clear error naming the valid sites otherwise."""
    try:
        return SITES[name]
    except KeyError:
        raise BadInputError(f"unknown site {name!r}; valid sites: {', '.join(SITES)}") from None


def describe_sites() -> str:
    """One line per site with its settings (``synthscan phantom --list-sites``)."""
    return "\n".join(site.summary() for site in SITES.values())
