"""Pydantic v2 models for every CDS Hooks 2.0 object we read or write.

Inbound models (requests, feedback) ignore unknown fields so newer clients keep working; outbound
models (discovery, response) forbid them and never carry `null`, `""`, `[]` or `{}` (R3), except
the empty `{"cards": []}`. Spec: https://cds-hooks.hl7.org/2.0/
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit
from uuid import UUID

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    StringConstraints,
    model_validator,
)

SUMMARY_MAX_CHARS = 139  # "<140-character summary"
EARLIEST_YEAR = 1900  # feedback timestamps before this (in UTC) are refused
FHIR_ID_PATTERN = r"^[A-Za-z0-9\-\.]{1,64}$"
USER_ID_PATTERN = r"^[A-Za-z]+/[A-Za-z0-9\-\.]{1,64}$"  # ord-1: {type}/{id}


def _absolute_url(value: str) -> str:
    """Accept only absolute http(s) URLs, unchanged."""
    parts = urlsplit(value)
    if parts.scheme not in {"http", "https"} or not parts.netloc:
        raise ValueError("must be an absolute http(s) URL")
    return value


def _not_a_dot_segment(value: str) -> str:
    """Refuse `.` and `..`: valid by the FHIR id pattern, but path segments in a URL."""
    if value.rsplit("/", 1)[-1] in (".", ".."):
        raise ValueError("must not be '.' or '..'")
    return value


def _in_supported_range(value: datetime) -> datetime:
    """The instant in UTC, when it falls in the years 1900 to 9999 there (no overflow)."""
    try:
        utc = value.astimezone(UTC)
    except OverflowError:
        utc = None
    if utc is None or utc.year < EARLIEST_YEAR:
        raise ValueError(f"must lie between the years {EARLIEST_YEAR} and 9999 in UTC")
    return utc


Text = Annotated[str, StringConstraints(min_length=1)]
AbsoluteUrl = Annotated[str, StringConstraints(min_length=1), AfterValidator(_absolute_url)]
FhirId = Annotated[
    str, StringConstraints(pattern=FHIR_ID_PATTERN), AfterValidator(_not_a_dot_segment)
]
UtcInstant = Annotated[AwareDatetime, AfterValidator(_in_supported_range)]
JsonObject = Annotated[dict[str, Any], Field(min_length=1)]  # a non-empty JSON object


class _Inbound(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class _Outbound(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    def to_json(self) -> dict[str, Any]:
        """Dump for the wire: JSON types, no unset or None values."""
        return self.model_dump(mode="json", exclude_none=True)


# --- closed value sets ---


class Indicator(StrEnum):
    """Card urgency (https://cds-hooks.hl7.org/2.0/#card-attributes)."""

    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"


class SelectionBehavior(StrEnum):
    """How many suggestions a user may accept (https://cds-hooks.hl7.org/2.0/#card-attributes)."""

    AT_MOST_ONE = "at-most-one"
    ANY = "any"


class ActionType(StrEnum):
    """What an action does to a resource (https://cds-hooks.hl7.org/2.0/#action)."""

    CREATE = "create"
    UPDATE = "update"
    DELETE = "delete"


class LinkType(StrEnum):
    """Plain link or SMART app launch (https://cds-hooks.hl7.org/2.0/#link)."""

    ABSOLUTE = "absolute"
    SMART = "smart"


class FeedbackOutcome(StrEnum):
    """What the user did with a card (https://cds-hooks.hl7.org/2.0/#feedback), cds-fb-1."""

    ACCEPTED = "accepted"
    OVERRIDDEN = "overridden"


# --- discovery ---


class Service(_Outbound):
    """One CDS Service in discovery (https://cds-hooks.hl7.org/2.0/#response)."""

    hook: Text
    title: Text | None = None
    description: Text
    id: Text
    prefetch: Annotated[dict[str, Text], Field(min_length=1)] | None = None
    usageRequirements: Text | None = None
    extension: JsonObject | None = None


class Services(_Outbound):
    """The discovery response body (https://cds-hooks.hl7.org/2.0/#discovery)."""

    services: list[Service]


# --- request ---


class FhirAuthorization(_Inbound):
    """The access token a client lends us.

    https://cds-hooks.hl7.org/2.0/#passing-the-access-token-to-the-cds-service
    """

    access_token: SecretStr = Field(min_length=1)
    token_type: Literal["Bearer"]
    expires_in: int = Field(ge=0)
    scope: Text
    subject: Text
    patient: FhirId | None = None


class HookRequest(_Inbound):
    """The body of a service call (https://cds-hooks.hl7.org/2.0/#http-request_1)."""

    hook: Text
    hookInstance: UUID
    fhirServer: AbsoluteUrl | None = None
    fhirAuthorization: FhirAuthorization | None = None
    context: dict[str, Any]
    prefetch: dict[str, Any] | None = None
    extension: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _authorization_needs_server(self) -> HookRequest:
        """cds-r-1: fhirAuthorization implies fhirServer."""
        if self.fhirAuthorization is not None and self.fhirServer is None:
            raise ValueError("fhirAuthorization requires fhirServer (cds-r-1)")
        return self

    @property
    def access_token(self) -> str | None:
        """The FHIR access token, only for the FHIR client; never log it."""
        if self.fhirAuthorization is None:
            return None
        return self.fhirAuthorization.access_token.get_secret_value()


class PatientViewContext(_Inbound):
    """patient-view context (https://cds-hooks.hl7.org/hooks/STU1/patient-view.html)."""

    userId: Annotated[
        str, StringConstraints(pattern=USER_ID_PATTERN), AfterValidator(_not_a_dot_segment)
    ]
    patientId: FhirId
    encounterId: FhirId | None = None
    extension: dict[str, Any] | None = None


# --- response ---


class Coding(_Outbound):
    """A code from a code system (https://cds-hooks.hl7.org/2.0/#coding)."""

    system: Text
    code: Text
    display: Text | None = None


class OverrideReason(Coding):
    """A reason a user may pick to override a card; display is required (cds-resp-4)."""

    display: Text


class Source(_Outbound):
    """Where a card's guidance comes from (https://cds-hooks.hl7.org/2.0/#source)."""

    label: Text
    url: AbsoluteUrl | None = None
    icon: AbsoluteUrl | None = None
    topic: Coding | None = None


class Action(_Outbound):
    """A change the client may apply (https://cds-hooks.hl7.org/2.0/#action)."""

    type: ActionType
    description: Text
    resource: JsonObject | None = None
    resourceId: Text | None = None
    extension: JsonObject | None = None

    @model_validator(mode="after")
    def _resource_matches_type(self) -> Action:
        """cds-resp-2: delete names a resourceId; create and update carry the resource."""
        if self.type is ActionType.DELETE:
            if self.resourceId is None or self.resource is not None:
                raise ValueError("a delete action uses resourceId, not resource (cds-resp-2)")
        elif self.resource is None:
            raise ValueError(f"a {self.type.value} action needs a resource")
        return self


class SystemAction(Action):
    """An action the client may apply without a card (https://cds-hooks.hl7.org/2.0/#system-action)."""


class Suggestion(_Outbound):
    """A set of actions offered together (https://cds-hooks.hl7.org/2.0/#suggestion)."""

    label: Text
    uuid: UUID | None = None
    isRecommended: bool | None = None
    actions: Annotated[list[Action], Field(min_length=1)] | None = None
    extension: JsonObject | None = None


class Link(_Outbound):
    """A link to a reference or a SMART app (https://cds-hooks.hl7.org/2.0/#link)."""

    label: Text
    url: AbsoluteUrl
    type: LinkType
    appContext: Text | None = None
    autolaunchable: bool | None = None
    extension: JsonObject | None = None

    @model_validator(mode="after")
    def _app_context_only_for_smart(self) -> Link:
        """cds-resp-3: appContext only on smart links."""
        if self.appContext is not None and self.type is not LinkType.SMART:
            raise ValueError("appContext is only valid on smart links (cds-resp-3)")
        return self


class Card(_Outbound):
    """One piece of guidance (https://cds-hooks.hl7.org/2.0/#card-attributes)."""

    uuid: UUID | None = None
    summary: Annotated[str, StringConstraints(min_length=1, max_length=SUMMARY_MAX_CHARS)]
    detail: Text | None = None
    indicator: Indicator
    source: Source
    suggestions: Annotated[list[Suggestion], Field(min_length=1)] | None = None
    selectionBehavior: SelectionBehavior | None = None
    overrideReasons: Annotated[list[OverrideReason], Field(min_length=1)] | None = None
    links: Annotated[list[Link], Field(min_length=1)] | None = None
    extension: JsonObject | None = None

    @model_validator(mode="after")
    def _suggestions_are_consistent(self) -> Card:
        """cds-resp-6: suggestions need selectionBehavior; cds-resp-1: one recommended at most."""
        if self.suggestions is None:
            return self
        if self.selectionBehavior is None:
            raise ValueError("suggestions require selectionBehavior (cds-resp-6)")
        recommended = sum(1 for s in self.suggestions if s.isRecommended)
        if self.selectionBehavior is SelectionBehavior.AT_MOST_ONE and recommended > 1:
            raise ValueError("at-most-one allows at most one recommended suggestion (cds-resp-1)")
        return self


class HookResponse(_Outbound):
    """The body of a service response (https://cds-hooks.hl7.org/2.0/#cds-service-response)."""

    cards: list[Card]
    systemActions: Annotated[list[SystemAction], Field(min_length=1)] | None = None

    @model_validator(mode="after")
    def _no_empty_values(self) -> HookResponse:
        """R3: nothing in the response is null, "", [] or {} (other than an empty cards list)."""
        for name, items in self.to_json().items():
            for index, item in enumerate(items):
                path = find_empty_value(item)
                if path is not None:
                    raise ValueError(f"empty value at {name}[{index}].{path}")
        return self


def find_empty_value(value: Any, path: str = "") -> str | None:
    """Return the path of the first null, "", [] or {} inside `value`, or None."""
    if is_empty(value):
        return path or "."
    trail = _trail_to_empty(value)
    if trail is None:
        return None
    joined = ".".join(trail)
    return f"{path}.{joined}" if path else joined


_EMPTIABLE = (str, list, dict)
_CONTAINERS = (list, dict)


def is_empty(value: Any) -> bool:
    """True for null, "", [] and {}: the values CDS Hooks forbids in a response."""
    return value is None or (not value and isinstance(value, _EMPTIABLE))


def _trail_to_empty(value: Any) -> list[str] | None:
    """The keys (`name` or `[index]`) leading to the first empty value below `value`, or None."""
    if isinstance(value, dict):
        items: Any = value.items()
    elif isinstance(value, list):
        items = enumerate(value)
    else:
        return None
    for key, child in items:
        if is_empty(child):
            below: list[str] | None = []
        elif isinstance(child, _CONTAINERS):
            below = _trail_to_empty(child)
        else:
            continue  # a value that is not empty and holds nothing
        if below is not None:
            label = f"[{key}]" if isinstance(value, list) else str(key)
            return [label, *below]
    return None


# --- feedback ---


class AcceptedSuggestion(_Inbound):
    """A suggestion the user accepted (https://cds-hooks.hl7.org/2.0/#suggestion-accepted)."""

    id: UUID


class FeedbackCoding(_Inbound):
    """An override reason as the client sends it back; display is optional here."""

    system: Text
    code: Text
    display: str | None = None


class OverrideReasonFeedback(_Inbound):
    """Why the user overrode a card (https://cds-hooks.hl7.org/2.0/#overridereason)."""

    reason: FeedbackCoding | None = None
    userComment: Text | None = None

    @model_validator(mode="after")
    def _not_empty(self) -> OverrideReasonFeedback:
        """cds-fb-3: a reason, a comment, or both."""
        if self.reason is None and self.userComment is None:
            raise ValueError("overrideReason needs a reason or a userComment (cds-fb-3)")
        return self


class FeedbackItem(_Inbound):
    """One user interaction with a card (https://cds-hooks.hl7.org/2.0/#feedback)."""

    card: UUID
    outcome: FeedbackOutcome
    acceptedSuggestions: Annotated[list[AcceptedSuggestion], Field(min_length=1)] | None = None
    overrideReason: OverrideReasonFeedback | None = None
    outcomeTimestamp: UtcInstant  # normalised to UTC

    @model_validator(mode="after")
    def _accepted_names_suggestions(self) -> FeedbackItem:
        """cds-fb-2: an accepted outcome lists the accepted suggestions."""
        if self.outcome is FeedbackOutcome.ACCEPTED and not self.acceptedSuggestions:
            raise ValueError("accepted feedback requires acceptedSuggestions (cds-fb-2)")
        return self


class Feedback(_Inbound):
    """The feedback request body (https://cds-hooks.hl7.org/2.0/#feedback)."""

    feedback: Annotated[list[FeedbackItem], Field(min_length=1)]
