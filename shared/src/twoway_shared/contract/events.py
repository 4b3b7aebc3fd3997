"""The `data` of every event type of the contract, one frozen pydantic model each."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, Field, StringConstraints, model_validator

from twoway_shared.contract.values import (
    Availability,
    ContractModel,
    Email,
    EventId,
    FreeText,
    Grade,
    Id,
    IsoDate,
    Language,
    OneLine,
    Reason,
    StrictBool,
    Tag,
    Tags,
    TimeZoneName,
    UtcDateTime,
    rfc3339,
)

INT32_MAX = 2**31 - 1
Revision = Annotated[int, Field(strict=True, ge=0, le=INT32_MAX)]
"""A revision or iCalendar SEQUENCE, stored as a PostgreSQL `integer`."""
Sequence = Annotated[int, Field(strict=True, ge=1, le=52)]
SeriesLength = Annotated[int, Field(strict=True, ge=1, le=52)]
Rating = Annotated[int, Field(strict=True, ge=1, le=5)] | None
Text100 = Annotated[OneLine, StringConstraints(strict=True, min_length=1, max_length=100)]
SystemReason = Annotated[str, StringConstraints(strict=True, min_length=1, max_length=500)]
"""A reason Twoway writes for people to read (no personal data)."""


def _unique_minutes(items: list[int]) -> list[int]:
    return list(dict.fromkeys(items))


def _unique_tags(items: list[str]) -> list[str]:
    return list(dict.fromkeys(items))


# ---------------------------------------------------------------- programmes.v1


class MatchingSettings(ContractModel):
    """How a programme forms pairs."""

    mode: Literal["continuous", "batch"] = "continuous"
    acceptance_required: StrictBool = False
    min_grade_gap: Annotated[int, Field(strict=True, ge=0, le=29)] = 1
    cross_department: StrictBool = True
    proposal_ttl_hours: Annotated[int, Field(strict=True, ge=1, le=8760)] = 72
    min_score: Annotated[float, Field(ge=0.0, le=1.0, allow_inf_nan=False)] = Field(
        default=0.0, description="(1.1) pairs scoring below this are not eligible"
    )


class ProgressSettings(ContractModel):
    """(1.1) How the progress service follows a programme's pairs."""

    fit_check: StrictBool = True
    inactive_warning_days: Annotated[int, Field(strict=True, ge=0, le=365)] = 21
    inactive_close_days: Annotated[int, Field(strict=True, ge=0, le=730)] = 42
    credit_minutes: Annotated[int, Field(strict=True, ge=15, le=120)] = 50

    @model_validator(mode="after")
    def _close_after_warning(self) -> ProgressSettings:
        if self.inactive_close_days and self.inactive_close_days <= self.inactive_warning_days:
            raise ValueError(
                f"inactive_close_days ({self.inactive_close_days}) must be 0 or greater than "
                f"inactive_warning_days ({self.inactive_warning_days})"
            )
        return self


class ProgrammeConfigured(ContractModel):
    """Creates or replaces a programme; every field but `programme_id` has a default."""

    programme_id: Id
    name: Annotated[OneLine, StringConstraints(strict=True, max_length=200)] = ""
    session_minutes: Annotated[int, Field(strict=True, ge=15, le=120, multiple_of=15)] = 30
    cadence: Literal["weekly", "fortnightly"] = "weekly"
    sessions: SeriesLength = 12
    starts_on: IsoDate | None = Field(
        default=None, description="null or absent: the day the event is processed"
    )
    min_notice_hours: Annotated[int, Field(strict=True, ge=0, le=336)] = 24
    reminder_minutes: Annotated[
        list[Annotated[int, Field(strict=True, ge=0, le=20160)]],
        Field(max_length=5),
        AfterValidator(_unique_minutes),
    ] = Field(default=[1440])  # pydantic copies mutable defaults per instance
    matching: MatchingSettings = MatchingSettings()
    progress: ProgressSettings = ProgressSettings()
    coordinator_email: Email | None = Field(
        default=None, description="(1.1) where at-risk and inactive pairs are reported"
    )


class ProgrammeMatchingRequested(ContractModel):
    """Runs a matching round for the programme now."""

    programme_id: Id


# ---------------------------------------------------------------- enrolments.v1


class NotifyPreferences(ContractModel):
    """Which messages a participant wants."""

    email: StrictBool = True
    reminders: StrictBool = True


class ParticipantProfile(ContractModel):
    """The full profile carried by `participant.enrolled` and `participant.updated`."""

    participant_id: Id
    programme_id: Id
    role: Literal["mentor", "mentee"]
    display_name: Annotated[OneLine, StringConstraints(strict=True, min_length=1, max_length=200)]
    email: Email
    grade: Grade
    department: Text100
    manager_id: Id | None = None
    location: Text100 | None = None
    timezone: TimeZoneName
    languages: Annotated[list[Language], Field(min_length=1, max_length=10)]
    offers: Tags
    wants: Tags
    availability: Availability
    capacity: Annotated[int, Field(strict=True, ge=1, le=5)] = 1
    locale: Language = "en"
    notify: NotifyPreferences = NotifyPreferences()
    revision: Revision = 0


class ParticipantEnrolled(ParticipantProfile):
    """A person joins a programme (an upsert ordered by `revision`)."""


class ParticipantUpdated(ParticipantProfile):
    """A participant's profile replaced (an upsert ordered by `revision`)."""


class ParticipantWithdrawn(ContractModel):
    """A participant leaves; with `erase` every service deletes their personal data."""

    participant_id: Id
    programme_id: Id
    reason: Reason = None
    erase: StrictBool = False


# ---------------------------------------------------------------- pair-responses.v1


class PairResponseSubmitted(ContractModel):
    """One of the two people of a proposed pair accepts or declines it."""

    pair_id: Id
    participant_id: Id
    response: Literal["accept", "decline"]
    reason: Reason = None


# ---------------------------------------------------------------- session-requests.v1


class SessionRescheduleRequested(ContractModel):
    """A participant asks for a session to move."""

    session_id: Id
    pair_id: Id
    requested_by: Id
    reason: Reason = None
    not_before: UtcDateTime | None = None


class SessionAttendanceRecorded(ContractModel):
    """A participant says whether they attended a session, with an optional rating."""

    session_id: Id
    pair_id: Id
    participant_id: Id
    attended: StrictBool
    rating: Rating = None
    comment: Annotated[FreeText, StringConstraints(strict=True, max_length=2000)] | None = None


# ---------------------------------------------------------------- pairs.v1


class PairReasons(ContractModel):
    """Why a pair was proposed."""

    mentee_learns: Annotated[list[Tag], Field(max_length=30)]
    mentor_learns: Annotated[list[Tag], Field(max_length=30)]
    languages: Annotated[list[Tag], Field(max_length=10)]
    weekly_overlap_minutes: Annotated[int, Field(strict=True, ge=0, le=10080)]


class PairMembers(ContractModel):
    """The fields every pairs.v1 event carries."""

    pair_id: Id
    programme_id: Id
    mentor_id: Id
    mentee_id: Id


class PairProposed(PairMembers):
    """Matching proposes a pair; `expires_at` is null unless acceptance is required."""

    score: Annotated[float, Field(strict=True, ge=0.0, le=1.0, allow_inf_nan=False)]
    reasons: PairReasons
    expires_at: UtcDateTime | None = None


class PairConfirmed(PairMembers):
    """A pair is active."""


class PairDeclined(PairMembers):
    """A proposed pair will not go ahead."""

    declined_by: Id | None = None
    reason: Literal["declined", "expired", "withdrawn"]


class PairEnded(PairMembers):
    """A confirmed pair has ended."""

    reason: Literal["withdrawn", "cancelled", "not_a_fit", "inactive", "completed"]
    withdrawn_by: Id | None = None


class PairResponseRejected(ContractModel):
    """(1.1) A response to a pair could not be applied; `reason` is for the person."""

    pair_id: Id
    participant_id: Id
    response: Literal["accept", "decline"]
    reason: SystemReason


# ---------------------------------------------------------------- sessions.v1


class SessionFields(ContractModel):
    """The fields every session event about one booked session carries."""

    session_id: Id
    pair_id: Id
    programme_id: Id
    mentor_id: Id
    mentee_id: Id
    sequence: Sequence


class SessionScheduled(SessionFields):
    """A session is booked; `revision` is its iCalendar SEQUENCE."""

    total: SeriesLength
    starts_at: UtcDateTime
    ends_at: UtcDateTime
    revision: Revision = 0

    @model_validator(mode="after")
    def _starts_before_ends(self) -> SessionScheduled:
        if self.starts_at >= self.ends_at:
            raise ValueError(
                f"starts_at {rfc3339(self.starts_at)} must be before "
                f"ends_at {rfc3339(self.ends_at)}"
            )
        return self


class SessionRescheduled(SessionScheduled):
    """A booked session moved to a new time."""

    previous_starts_at: UtcDateTime
    reason: Literal["requested", "availability_changed"]
    revision: Revision


class SessionCancelled(SessionFields):
    """A booked session will not take place."""

    revision: Revision
    reason: Literal["pair_ended", "participant_withdrawn", "no_slot"]


class Ratings(ContractModel):
    """`mentor` is the rating the mentor gave, `mentee` the one the mentee gave."""

    mentor: Rating = None
    mentee: Rating = None


class SessionCompleted(SessionFields):
    """A session took place."""

    minutes: Annotated[int, Field(strict=True, ge=0, le=1440)]
    ratings: Ratings = Ratings()


class SessionMissed(SessionFields):
    """A session did not take place because someone was absent."""

    absent: Annotated[list[Id], Field(max_length=2)]


class SessionRequestRejected(ContractModel):
    """A reschedule or attendance request could not be applied."""

    session_id: Id
    pair_id: Id
    requested_by: Id
    request: Literal["reschedule", "attendance"]
    reason: SystemReason


class SessionBookingFailed(ContractModel):
    """A confirmed pair got only `booked` of its `total` sessions."""

    pair_id: Id
    programme_id: Id
    mentor_id: Id
    mentee_id: Id
    booked: Annotated[int, Field(strict=True, ge=0, le=52)]
    total: SeriesLength
    reason: SystemReason


# ---------------------------------------------------------------- notifications.v1


class NotificationSent(ContractModel):
    """A message was handed to the mail server."""

    notification_id: Id
    participant_id: Id
    channel: Literal["email"]
    template: Id
    cause_id: EventId
    session_id: Id | None = None


class NotificationFailed(ContractModel):
    """A message could not be delivered; `error` holds no personal data."""

    notification_id: Id
    participant_id: Id
    channel: Literal["email"]
    template: Id
    cause_id: EventId
    session_id: Id | None = None
    error: Annotated[str, StringConstraints(strict=True, min_length=1, max_length=1000)]


# ---------------------------------------------------------------- feedback.v1 (1.1)

Fit = Literal["good", "unsure", "not_a_fit"]
LearnedTags = Annotated[list[Tag], Field(max_length=10), AfterValidator(_unique_tags)]


class SessionFeedbackSubmitted(ContractModel):
    """One of the pair's two people about one started session; a later one replaces it."""

    session_id: Id
    pair_id: Id
    participant_id: Id
    learned: LearnedTags = Field(default_factory=list)
    rating: Annotated[int, Field(strict=True, ge=1, le=5)]
    fit: Fit | None = None
    comment: Annotated[FreeText, StringConstraints(strict=True, max_length=2000)] | None = None


class Goal(ContractModel):
    """One thing a person wants to get out of a pair."""

    tag: Tag
    note: Annotated[FreeText, StringConstraints(strict=True, max_length=280)] | None = None


class PairGoalsSet(ContractModel):
    """What one person of a pair wants from it; replaces their earlier goals."""

    pair_id: Id
    participant_id: Id
    goals: Annotated[list[Goal], Field(min_length=1, max_length=10)]


# ---------------------------------------------------------------- progress.v1 (1.1)

Health = Literal["on_track", "at_risk", "inactive"]
HealthReason = Literal["missed_in_a_row", "low_rating", "fit_unsure", "no_recent_session"]
Count = Annotated[int, Field(strict=True, ge=0, le=1000)]
Minutes = Annotated[int, Field(strict=True, ge=0, le=100_000)]


class PairHealthChanged(PairMembers):
    """A pair's health or its reasons changed."""

    health: Health
    reasons: Annotated[list[HealthReason], Field(max_length=4)]
    sessions_completed: Count
    sessions_missed: Count
    last_activity_at: UtcDateTime | None = None


class PairRematchRequested(PairMembers):
    """Progress asks matching to end a pair and find both people someone new."""

    reason: Literal["not_a_fit", "inactive"]


class PairCompleted(PairMembers):
    """Every session of the pair's series has an outcome."""

    sessions_completed: Count
    sessions_missed: Count
    minutes: Minutes
    mentee_learned: Annotated[list[Tag], Field(max_length=100)]
    mentor_learned: Annotated[list[Tag], Field(max_length=100)]


class CreditAwarded(ContractModel):
    """Continuing-education credits for one person of a completed pair."""

    credit_id: Id
    participant_id: Id
    programme_id: Id
    pair_id: Id
    role: Literal["mentor", "mentee"]
    sessions_completed: Count
    minutes: Minutes
    credits: Annotated[float, Field(ge=0.0, le=10_000.0, allow_inf_nan=False)]
    topics: Annotated[list[Tag], Field(max_length=100)]
    issued_at: UtcDateTime

    @model_validator(mode="after")
    def _whole_fifths(self) -> CreditAwarded:
        if abs(self.credits * 5 - round(self.credits * 5)) > 1e-9:
            raise ValueError(f"credits {self.credits} must be a whole number of fifths")
        return self


EVENT_MODELS: dict[str, type[BaseModel]] = {
    "programme.configured": ProgrammeConfigured,
    "programme.matching_requested": ProgrammeMatchingRequested,
    "participant.enrolled": ParticipantEnrolled,
    "participant.updated": ParticipantUpdated,
    "participant.withdrawn": ParticipantWithdrawn,
    "pair.response_submitted": PairResponseSubmitted,
    "session.reschedule_requested": SessionRescheduleRequested,
    "session.attendance_recorded": SessionAttendanceRecorded,
    "pair.proposed": PairProposed,
    "pair.confirmed": PairConfirmed,
    "pair.declined": PairDeclined,
    "pair.ended": PairEnded,
    "session.scheduled": SessionScheduled,
    "session.rescheduled": SessionRescheduled,
    "session.cancelled": SessionCancelled,
    "session.completed": SessionCompleted,
    "session.missed": SessionMissed,
    "session.request_rejected": SessionRequestRejected,
    "session.booking_failed": SessionBookingFailed,
    "notification.sent": NotificationSent,
    "notification.failed": NotificationFailed,
    "pair.response_rejected": PairResponseRejected,
    "session.feedback_submitted": SessionFeedbackSubmitted,
    "pair.goals_set": PairGoalsSet,
    "pair.health_changed": PairHealthChanged,
    "pair.rematch_requested": PairRematchRequested,
    "pair.completed": PairCompleted,
    "credit.awarded": CreditAwarded,
}
"""Short event type (`participant.enrolled`) -> model of its `data`."""

_EVENT_TYPES: dict[type[BaseModel], str] = {model: name for name, model in EVENT_MODELS.items()}


def event_type_of(model_cls: type[BaseModel]) -> str:
    """The short event type of a data model class, e.g. `PairConfirmed` -> `pair.confirmed`."""
    try:
        return _EVENT_TYPES[model_cls]
    except KeyError:
        raise ValueError(f"{model_cls.__name__} is not the data model of an event type") from None
