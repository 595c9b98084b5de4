"""The config models: endpoints, their expectations and TLS settings, their defaults, and the whole file."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import AfterValidator, Field, create_model, model_validator

from exporter.probes.budget import DEFAULT_BODY_BUDGET
from exporter.probes.spec import ExpectSpec, ProbeSpec, TLSSpec
from exporter.redact import redact_url
from exporter.sharding import rendezvous_bucket

from .host import HostConfig
from .status_page import StatusPage
from .values import (
    Duration,
    FilePath,
    HeaderName,
    HttpMethod,
    LabelName,
    Regex,
    Size,
    StatusList,
    StatusRange,
    StrictModel,
    TextValue,
    Url,
    Workers,
    check_header_value,
    check_interval,
    check_label_value,
    check_name,
    check_percent,
    check_vantage,
)


class Expect(StrictModel):
    """What a good response looks like."""

    status: StatusList = Field(default=(StatusRange(200, 299),), description="expected status codes; default 2xx")
    body_contains: str | None = Field(default=None, description="the body must contain this text")
    body_matches: Regex | None = Field(default=None, description="the body must match this regular expression")
    body_not_matches: Regex | None = Field(default=None, description="the body must not match this regular expression")
    headers: dict[HeaderName, Regex] = Field(
        default_factory=dict, description="response headers that must be present and match these regular expressions"
    )
    max_response_time: Duration | None = Field(default=None, description="a slower probe counts as failed (too_slow)")

    def spec(self) -> ExpectSpec:
        """The expectations as the prober's plain data."""
        return ExpectSpec(
            status=tuple((r.low, r.high) for r in self.status),
            status_text=", ".join(str(r) for r in self.status),
            body_contains=self.body_contains,
            body_matches=self.body_matches,
            body_not_matches=self.body_not_matches,
            headers=tuple(self.headers.items()),
            max_response_time=self.max_response_time,
        )


class TLSConfig(StrictModel):
    """TLS settings for https endpoints."""

    verify: bool = Field(default=True, description="verify the server certificate and host name")
    ca_file: FilePath | None = Field(
        default=None, description="PEM file of CA certificates to trust instead of the system's"
    )
    cert_file: FilePath | None = Field(default=None, description="PEM client certificate (mutual TLS)")
    key_file: FilePath | None = Field(default=None, description="PEM private key of the client certificate")
    server_name: str | None = Field(default=None, description="name to send in SNI and verify the certificate against")

    def spec(self) -> TLSSpec:
        """The TLS settings as the prober's plain data."""
        return TLSSpec(self.verify, self.ca_file, self.cert_file, self.key_file, self.server_name)


class SLO(StrictModel):
    """Service level objective."""

    availability: Annotated[float, AfterValidator(check_percent)] = Field(
        description="availability objective in percent, e.g. 99.9"
    )


class Endpoint(StrictModel):
    """One HTTP endpoint to probe."""

    name: Annotated[str, AfterValidator(check_name)] = Field(description="unique; becomes the endpoint label")
    url: Url = Field(description="http:// or https:// URL")
    method: HttpMethod = Field(default="GET", description="HTTP method")
    headers: dict[HeaderName, Annotated[TextValue, AfterValidator(check_header_value)]] = Field(
        default_factory=dict, description="request headers; ${VAR} allowed"
    )
    body: str | None = Field(default=None, description="request body")
    interval: Annotated[Duration, AfterValidator(check_interval)] = Field(
        default=30.0, description="time between probes; at least 100ms"
    )
    timeout: Duration = Field(default=10.0, description="deadline for the whole probe; shorter than interval")
    failure_threshold: int = Field(default=3, ge=1, description="consecutive failed probes that open an incident")
    success_threshold: int = Field(default=1, ge=1, description="consecutive good probes that close it")
    degraded_after: Duration | None = Field(default=2.0, description="a good probe slower than this marks DEGRADED")
    expect: Expect = Field(default_factory=Expect)
    tls: TLSConfig = Field(default_factory=TLSConfig)
    follow_redirects: bool = Field(default=True)
    max_redirects: int = Field(default=10, ge=0, le=100, description="more redirects than this fail the probe")
    body_size_limit: Size = Field(
        default=10 * 1024 * 1024, description="read at most this much of a response body; more fails the probe"
    )
    labels: dict[LabelName, Annotated[TextValue, AfterValidator(check_label_value)]] = Field(
        default_factory=dict, description="added to every series of the endpoint"
    )
    slo: SLO | None = Field(default=None)
    quorum: int | None = Field(
        default=None, ge=1, le=1000, description="vantages that must see it down to page (default: a majority)"
    )
    status_page: bool = Field(default=True, description="false leaves it off the status page (still probed)")

    @property
    def safe_url(self) -> str:
        """The URL without credentials, query string or fragment (safe for labels and logs)."""
        return redact_url(self.url)

    def probe_spec(self, shared: dict[int, Any] | None = None) -> ProbeSpec:
        """What the scheduler and the prober need of this endpoint, as plain data a worker process can take.

        With `shared`, endpoints that share their expect or tls settings (see the loader) share
        those parts of their specs too, and so do their copies on the other end of a pickle.
        """
        tls, expect = self.tls.spec(), self.expect.spec()
        if shared is not None:
            tls = shared.setdefault(id(self.tls), tls)
            expect = shared.setdefault(id(self.expect), expect)
        return ProbeSpec(
            name=self.name,
            url=self.url,
            method=self.method,
            headers=tuple(self.headers.items()),
            body=self.body,
            interval=self.interval,
            timeout=self.timeout,
            follow_redirects=self.follow_redirects,
            max_redirects=self.max_redirects,
            body_size_limit=self.body_size_limit,
            tls=tls,
            expect=expect,
        )


DEFAULTABLE = {k: v for k, v in Endpoint.model_fields.items() if k not in ("name", "url")}

EndpointDefaults: type[StrictModel] = create_model(  # type: ignore[call-overload]
    "EndpointDefaults",
    __base__=StrictModel,
    __doc__="Defaults for every endpoint key (but name and url).",
    # Not `| None`: a null default would be merged into every endpoint and fail there, where errors that come
    # from the defaults are not reported. Keys that take null on an endpoint (slo, degraded_after) still do here.
    **{
        name: (field.rebuild_annotation(), Field(default=None, description=field.description))
        for name, field in DEFAULTABLE.items()
    },
)


MAX_SHARDS = 1024


class Shard(StrictModel):
    """This agent's share of the endpoints, when several agents of one vantage split them."""

    index: int = Field(ge=0, description="this agent's shard, counting from 0")
    total: int = Field(ge=1, le=MAX_SHARDS, description="how many agents split the endpoints")

    @model_validator(mode="after")
    def _index_below_total(self) -> Shard:
        if self.index >= self.total:
            raise ValueError(f"shard index must be below total ({self.total}), got {self.index}")
        return self

    def owns(self, name: str) -> bool:
        """Whether this shard probes the endpoint of this name (rendezvous hashing of the name)."""
        return rendezvous_bucket(name, self.total) == self.index


class Config(StrictModel):
    """The whole config file."""

    defaults: EndpointDefaults | None = Field(default=None, description="defaults for every endpoint")
    endpoints: list[Endpoint] = Field(default_factory=list)
    host: HostConfig = Field(default_factory=HostConfig)
    max_concurrent_probes: int = Field(default=64, ge=1, le=10000, description="probes running at once, at most")
    body_memory_limit: Size = Field(
        default=DEFAULT_BODY_BUDGET,
        description="response bodies kept for body checks at once, per process (each probe worker has its own); "
        "a probe past it waits for room, within its timeout",
    )
    workers: Workers = Field(default="auto")
    vantage: Annotated[str, AfterValidator(check_vantage)] | None = Field(
        default=None, description="where this agent probes from (eu-west): the vantage label on its endpoint series"
    )
    shard: Shard | None = Field(default=None, description="probe only this agent's share of the endpoints")
    status_page: StatusPage = Field(default_factory=StatusPage, description="the public status page at /")
    data_dir: FilePath | None = Field(
        default=None,
        description="folder where states, incidents in progress and counters are kept across restarts "
        "(relative to this file; --data-dir and $UPWATCH_DATA_DIR take precedence); default: not kept",
    )

    @property
    def probed(self) -> list[Endpoint]:
        """The endpoints this agent probes and exports: its shard's, or all of them."""
        if self.shard is None:
            return self.endpoints
        return [ep for ep in self.endpoints if self.shard.owns(ep.name)]

    def endpoint(self, name: str) -> Endpoint:
        """The endpoint of this name."""
        for ep in self.endpoints:
            if ep.name == name:
                return ep
        raise KeyError(name)


def with_vantage(endpoint: Endpoint, vantage: str | None) -> Endpoint:
    """The endpoint with the agent's vantage among its labels, so that every series of it carries it.

    `vantage` is a reserved label name, so it never clashes with one of the endpoint's own.
    """
    if vantage is not None:
        endpoint.__dict__["labels"] = {**endpoint.labels, "vantage": vantage}
    return endpoint


# The parts of an endpoint that most endpoints have alike (from the defaults, or left out): one
# instance of each distinct value serves them all, instead of one per endpoint (about 1.5 KB each
# with pydantic's bookkeeping: some 7 MB at 5,000 endpoints).
_SHARED_PARTS = ("expect", "tls", "slo", "headers", "labels")


def share_parts(endpoint: Endpoint, shared: dict[tuple[str, str], object]) -> Endpoint:
    """The endpoint with its common parts replaced by equal instances seen before in this load.

    The parts are immutable (frozen models) or never changed once loaded (the header and label
    dicts), so sharing them is safe; their repr tells equal values apart exactly, regexes included.
    """
    parts = endpoint.__dict__
    for name in _SHARED_PARTS:
        value = parts[name]
        kept = shared.setdefault((name, repr(value)), value)
        if kept is not value:
            parts[name] = kept  # bypasses the frozen model's guard: the value is equal
    return endpoint
