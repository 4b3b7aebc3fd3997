"""A synthetic reverse-mentoring cohort: realistic, valid, deterministic participant profiles."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from twoway_shared.contract import WEEKDAYS, normalise_tag

DEPARTMENTS = (
    "Finance",
    "Marketing",
    "Legal",
    "Operations",
    "HR",
    "Sales",
    "Engineering",
    "Data & Analytics",
    "Customer Service",
    "Strategy",
)

DIGITAL_SKILLS = tuple(
    normalise_tag(tag)
    for tag in (
        "generative AI",
        "prompt engineering",
        "ChatGPT",
        "Copilot",
        "social media",
        "TikTok",
        "Instagram",
        "LinkedIn branding",
        "YouTube",
        "podcasting",
        "content creation",
        "influencer marketing",
        "cloud",
        "AWS",
        "cybersecurity",
        "phishing awareness",
        "data visualisation",
        "Power BI",
        "Tableau",
        "Excel automation",
        "Python",
        "SQL",
        "machine learning",
        "no-code automation",
        "Zapier",
        "low-code apps",
        "agile",
        "remote collaboration",
        "Slack",
        "Notion",
        "Figma",
        "UX design",
        "e-commerce",
        "digital payments",
        "crypto",
        "gaming",
        "esports",
        "mobile apps",
        "smart home",
        "digital wellbeing",
    )
)
"""What junior mentors offer and senior mentees want to learn."""

LEADERSHIP_SKILLS = tuple(
    normalise_tag(tag)
    for tag in (
        "stakeholder management",
        "negotiation",
        "career planning",
        "public speaking",
        "P&L",
        "strategy",
        "leadership",
        "executive presence",
        "decision making",
        "budgeting",
        "corporate finance",
        "change management",
        "people management",
        "board communication",
        "networking",
        "influencing",
        "business writing",
        "client relationships",
        "mergers and acquisitions",
        "risk management",
    )
)
"""What senior mentees offer and junior mentors want to learn."""


@dataclass(frozen=True)
class Office:
    """Where a participant works: a city, its time zone and the languages spoken there."""

    city: str
    timezone: str
    weight: int
    extra_languages: tuple[str, ...]
    locales: tuple[str, ...]


OFFICES = (
    Office("London", "Europe/London", 30, ("fr", "es"), ("en", "en-GB", "en-GB")),
    Office("Berlin", "Europe/Berlin", 12, ("de", "de", "fr"), ("en", "en", "de")),
    Office("Paris", "Europe/Paris", 8, ("fr", "fr", "es"), ("en", "fr", "fr")),
    Office("New York", "America/New_York", 22, ("es",), ("en",)),
    Office("São Paulo", "America/Sao_Paulo", 8, ("pt", "pt", "es"), ("en", "pt-BR")),
    Office("Bengaluru", "Asia/Kolkata", 10, ("hi", "hi"), ("en", "en-IN")),
    Office("Singapore", "Asia/Singapore", 6, ("ja", "hi"), ("en",)),
    Office("Sydney", "Australia/Sydney", 4, ("ja",), ("en", "en-AU")),
)

FIRST_NAMES = [
    "Aisha",
    "Alex",
    "Amara",
    "Ana",
    "Andrea",
    "Arjun",
    "Ben",
    "Camille",
    "Carlos",
    "Chen",
    "Chloe",
    "Daniel",
    "Dana",
    "Diego",
    "Elena",
    "Emma",
    "Fatima",
    "Felix",
    "Grace",
    "Hannah",
    "Hiroshi",
    "Ines",
    "Isabel",
    "Jack",
    "James",
    "Jonas",
    "Julia",
    "Kai",
    "Kenji",
    "Lars",
    "Laura",
    "Leila",
    "Lucas",
    "Maya",
    "Mei",
    "Mohammed",
    "Nadia",
    "Noah",
    "Olivia",
    "Omar",
    "Priya",
    "Rahul",
    "Rosa",
    "Sam",
    "Sofia",
    "Tom",
    "Uma",
    "Victor",
    "Wei",
    "Yara",
    "Zoe",
]
LAST_NAMES = [
    "Adeyemi",
    "Almeida",
    "Andersson",
    "Bauer",
    "Bianchi",
    "Chen",
    "Costa",
    "Dubois",
    "Fischer",
    "Garcia",
    "Gupta",
    "Haddad",
    "Hughes",
    "Ito",
    "Iyer",
    "Jensen",
    "Kaur",
    "Kim",
    "Kowalski",
    "Lambert",
    "Lee",
    "Lopez",
    "Martin",
    "Meyer",
    "Moreau",
    "Murphy",
    "Nakamura",
    "Nguyen",
    "Novak",
    "Okafor",
    "Oliveira",
    "Patel",
    "Rossi",
    "Santos",
    "Schmidt",
    "Silva",
    "Singh",
    "Smith",
    "Tanaka",
    "Taylor",
    "Thompson",
    "Walker",
    "Wang",
    "Weber",
    "Whitfield",
    "Williams",
    "Wilson",
    "Yilmaz",
    "Zhang",
]

_STARTS = [f"{hour:02d}:{minute:02d}" for hour in range(8, 16) for minute in (0, 30)]


def _availability(rng: random.Random) -> list[dict[str, str]]:
    """2..4 business-hours windows on different weekdays, in the participant's own zone."""
    days = sorted(rng.sample(range(5), rng.randint(2, 4)))
    windows = []
    for day in days:
        start = rng.choice(_STARTS)
        hours, minutes = map(int, start.split(":"))
        end_minute = min(hours * 60 + minutes + rng.choice((60, 90, 120, 180)), 18 * 60)
        windows.append(
            {
                "day": WEEKDAYS[day],
                "start": start,
                "end": f"{end_minute // 60:02d}:{end_minute % 60:02d}",
            }
        )
    return windows


def _languages(rng: random.Random, office: Office) -> list[str]:
    languages = ["en"]
    if rng.random() < 0.35:
        languages.append(rng.choice(office.extra_languages))
    return languages


def _email(first: str, last: str, taken: set[str]) -> str:
    local = f"{first}.{last}".lower()
    email, n = f"{local}@example.com", 1
    while email in taken:
        n += 1
        email = f"{local}{n}@example.com"
    taken.add(email)
    return email


def _profile(
    rng: random.Random, participant_id: str, programme_id: str, role: str, emails: set[str]
) -> dict[str, Any]:
    office = rng.choices(OFFICES, weights=[o.weight for o in OFFICES])[0]
    first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
    mentor = role == "mentor"
    teaches, learns = (
        (DIGITAL_SKILLS, LEADERSHIP_SKILLS) if mentor else (LEADERSHIP_SKILLS, DIGITAL_SKILLS)
    )
    return {
        "participant_id": participant_id,
        "programme_id": programme_id,
        "role": role,
        "display_name": f"{first} {last}",
        "email": _email(first, last, emails),
        "grade": rng.randint(3, 12) if mentor else rng.randint(18, 28),
        "department": rng.choice(DEPARTMENTS),
        "manager_id": None,
        "location": office.city,
        "timezone": office.timezone,
        "languages": _languages(rng, office),
        "offers": rng.sample(teaches, rng.randint(3, 6)),
        "wants": rng.sample(learns, rng.randint(2, 4)),
        "availability": _availability(rng),
        "capacity": rng.choice((2, 2, 3)) if mentor and rng.random() < 0.15 else 1,
        "locale": rng.choice(office.locales),
        "notify": {"email": True, "reminders": rng.random() > 0.1},
        "revision": 0,
    }


def _make_unmatchable(cohort: list[dict[str, Any]]) -> None:
    """A few people nobody can be paired with, as in any real programme."""
    mentees = [p for p in cohort if p["role"] == "mentee"]
    if len(mentees) < 10:
        return
    # A language nobody else in the cohort speaks.
    loner = mentees[-1]
    loner.update(languages=["fi"], locale="fi", location="Helsinki", timezone="Europe/Helsinki")
    # Two people free only early on Sunday morning, when nobody else is.
    for person in mentees[-3:-1]:
        person.update(
            timezone="Australia/Sydney",
            location="Sydney",
            availability=[{"day": "sun", "start": "06:00", "end": "06:45"}],
        )


def _assign_managers(rng: random.Random, cohort: list[dict[str, Any]]) -> None:
    """About a third report to someone in the cohort who is more senior than they are."""
    for person in cohort:
        if rng.random() >= 0.3:
            continue
        seniors = [p for p in cohort if p["grade"] > person["grade"] + 1]
        if seniors:
            person["manager_id"] = rng.choice(seniors)["participant_id"]


def generate_cohort(
    n: int = 300, *, seed: int = 2027, programme_id: str = "RM-DEMO"
) -> list[dict[str, Any]]:
    """`n` JSON-shaped profiles valid as `participant.enrolled` data, the same for a seed.

    Senior mentees (grades 18-28) want digital skills and offer leadership; junior mentors
    (grades 3-12) the other way round. About half are mentors, some with capacity 2-3.
    """
    if n < 0:
        raise ValueError(f"n must be 0 or more, got {n}")
    rng = random.Random(seed)
    ids = [f"E{number}" for number in rng.sample(range(10_000, 100_000), n)]
    emails: set[str] = set()
    roles = ["mentor"] * (n // 2) + ["mentee"] * (n - n // 2)
    rng.shuffle(roles)
    cohort = [
        _profile(rng, pid, programme_id, role, emails) for pid, role in zip(ids, roles, strict=True)
    ]
    _assign_managers(rng, cohort)
    _make_unmatchable(cohort)
    return cohort
