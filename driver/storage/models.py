"""The ledger's tables.

Addresses are stored as 16-byte big-endian blobs (IPv4 too), so that both families sort and
compare correctly with a plain index on SQLite and PostgreSQL alike.

- ``subnets``: one address set per (address space, CIDR); sub-pools of one subnet share it.
- ``pools``: what Docker knows by a PoolID: a subnet and the range dynamic requests draw from.
- ``free_ranges``: the free addresses of each subnet as disjoint ranges; the lowest free address
  is one index lookup away.
- ``leases``: every address handed out; its primary key is the last guard against a double lease.
- ``reservations``: ranges an operator set aside with a label; never handed out dynamically.
- ``parked``: released addresses kept back for a while (``ipledger.quarantine``) or for the
  container that had them (``ipledger.hold``); not free until ``until`` (epoch seconds).
- ``history``: every allocation, release and reservation, for ``ipledger history``.
- ``findings``: what the last ``ipledger gc`` found leaking, for the metrics.
- ``attachments``: which hosts use each shared pool (``ipledger.shared``).
- ``dns_outbox``: the DNS changes leases made, written in the lease's transaction and sent by
  the publisher afterwards (docs/dns.md); ``dns_records``: what it published, so that
  ``ipledger dns sync`` touches no name ipledger does not manage.
- ``served``: the driver names ``ipledger serve`` has served this ledger under, by host, so that
  ``ipledger gc`` judges the networks of those drivers without being told.
"""

from __future__ import annotations

from datetime import datetime
from typing import cast

from sqlalchemy import (
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Table,
    Text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from driver.domain.pools import DETAIL_LENGTH, HOLDER_NAME_LENGTH

Address = LargeBinary(16)


class Base(DeclarativeBase):
    pass


class SubnetTable(Base):
    __tablename__ = "subnets"
    __table_args__ = (
        Index("ix_subnets_owner_space_first", "owner", "space", "version", "first", unique=True),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    # Whose address plan the subnet is in: "local" in an SQLite ledger (one host), the host id in
    # a shared PostgreSQL ledger, "shared" for pools that several hosts share.
    owner: Mapped[str] = mapped_column(String(64), server_default="local")
    space: Mapped[str] = mapped_column(String(64))
    version: Mapped[int] = mapped_column(Integer)
    cidr: Mapped[str] = mapped_column(String(64))
    first: Mapped[bytes] = mapped_column(Address)
    last: Mapped[bytes] = mapped_column(Address)
    refs: Mapped[int] = mapped_column(Integer)
    cursor: Mapped[bytes | None] = mapped_column(Address, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    # How many reservations the subnet has: a release looks for one only when there are any.
    reservations: Mapped[int] = mapped_column(Integer, server_default="0")


class PoolTable(Base):
    __tablename__ = "pools"

    owner: Mapped[str] = mapped_column(String(64), primary_key=True)
    id: Mapped[str] = mapped_column(String(200), primary_key=True)
    subnet_id: Mapped[int] = mapped_column(ForeignKey("subnets.id"), index=True)
    space: Mapped[str] = mapped_column(String(64))
    cidr: Mapped[str] = mapped_column(String(64))
    subpool: Mapped[str | None] = mapped_column(String(64), nullable=True)
    range_first: Mapped[bytes] = mapped_column(Address)
    range_last: Mapped[bytes] = mapped_column(Address)
    options: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    reuse: Mapped[str] = mapped_column(String(16), server_default="lowest")
    quarantine_s: Mapped[int] = mapped_column(Integer, server_default="0")
    hold_s: Mapped[int] = mapped_column(Integer, server_default="0")
    host_id: Mapped[str | None] = mapped_column(String(64), nullable=True)


class FreeRangeTable(Base):
    __tablename__ = "free_ranges"
    __table_args__ = (Index("ix_free_ranges_last", "subnet_id", "last", unique=True),)

    subnet_id: Mapped[int] = mapped_column(ForeignKey("subnets.id"), primary_key=True)
    first: Mapped[bytes] = mapped_column(Address, primary_key=True)
    last: Mapped[bytes] = mapped_column(Address)


class LeaseTable(Base):
    __tablename__ = "leases"
    __table_args__ = (
        Index("ix_leases_pool_id", "pool_id", "kind", "mac"),
        Index("ix_leases_cni_attachment", "cni_attachment"),
    )

    subnet_id: Mapped[int] = mapped_column(ForeignKey("subnets.id"), primary_key=True)
    address: Mapped[bytes] = mapped_column(Address, primary_key=True)
    pool_id: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(16))
    mac: Mapped[str | None] = mapped_column(String(32), nullable=True)
    name: Mapped[str | None] = mapped_column(String(HOLDER_NAME_LENGTH), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    host_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    # a CNI lease's attachment, "NETWORK/CONTAINER-ID/IFNAME"; None for Docker's leases
    cni_attachment: Mapped[str | None] = mapped_column(String(400), nullable=True)
    # the pod the runtime named for a CNI lease (CNI_ARGS), "NAMESPACE/NAME"; None when none
    pod: Mapped[str | None] = mapped_column(String(HOLDER_NAME_LENGTH), nullable=True)
    # the full DNS name the lease is published under; None when it is not published
    dns_name: Mapped[str | None] = mapped_column(String(255), nullable=True)


class ReservationTable(Base):
    __tablename__ = "reservations"

    subnet_id: Mapped[int] = mapped_column(ForeignKey("subnets.id"), primary_key=True)
    first: Mapped[bytes] = mapped_column(Address, primary_key=True)
    last: Mapped[bytes] = mapped_column(Address)
    label: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class ParkedTable(Base):
    __tablename__ = "parked"
    __table_args__ = (
        Index("ix_parked_until", "subnet_id", "until"),
        Index("ix_parked_mac", "pool_id", "mac"),
        Index("ix_parked_name", "pool_id", "name"),
    )

    subnet_id: Mapped[int] = mapped_column(ForeignKey("subnets.id"), primary_key=True)
    address: Mapped[bytes] = mapped_column(Address, primary_key=True)
    pool_id: Mapped[str] = mapped_column(String(200))
    mac: Mapped[str | None] = mapped_column(String(32), nullable=True)
    name: Mapped[str | None] = mapped_column(String(HOLDER_NAME_LENGTH), nullable=True)
    until: Mapped[float] = mapped_column(Float)


class HistoryTable(Base):
    __tablename__ = "history"
    __table_args__ = (
        Index("ix_history_address", "address", "id"),
        Index("ix_history_pool", "pool_id", "id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    host_id: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(16))
    pool_id: Mapped[str] = mapped_column(String(200))
    address: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str | None] = mapped_column(String(16), nullable=True)
    mac: Mapped[str | None] = mapped_column(String(32), nullable=True)
    name: Mapped[str | None] = mapped_column(String(HOLDER_NAME_LENGTH), nullable=True)
    detail: Mapped[str | None] = mapped_column(String(DETAIL_LENGTH), nullable=True)


class AttachmentTable(Base):
    """The hosts that use a shared pool; it is released when the last one lets go."""

    __tablename__ = "attachments"

    pool_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    host_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    attached_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class FindingTable(Base):
    __tablename__ = "findings"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    found_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    what: Mapped[str] = mapped_column(String(16))
    pool_id: Mapped[str] = mapped_column(String(200))
    address: Mapped[str | None] = mapped_column(String(64), nullable=True)
    detail: Mapped[str] = mapped_column(String(255))


class ServedTable(Base):
    __tablename__ = "served"

    host_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    driver: Mapped[str] = mapped_column(String(255), primary_key=True)
    socket: Mapped[str] = mapped_column(Text)
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class DnsOutboxTable(Base):
    """DNS changes not yet published, in the order they were made (``id``)."""

    __tablename__ = "dns_outbox"
    __table_args__ = (Index("ix_dns_outbox_name", "name", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(255))
    zone: Mapped[str] = mapped_column(String(255))
    action: Mapped[str] = mapped_column(String(8))
    address: Mapped[str] = mapped_column(String(64))
    reverse: Mapped[bool] = mapped_column(Boolean)
    # times are epoch seconds, as parked.until
    created_at: Mapped[float] = mapped_column(Float)
    next_at: Mapped[float] = mapped_column(Float)
    attempts: Mapped[int] = mapped_column(Integer, server_default="0")
    # the publisher that took it, until when: another takes it over once that has passed
    claimed_by: Mapped[str | None] = mapped_column(String(128), nullable=True)
    claimed_until: Mapped[float | None] = mapped_column(Float, nullable=True)
    failure: Mapped[str | None] = mapped_column(String(32), nullable=True)
    last_error: Mapped[str | None] = mapped_column(String(1024), nullable=True)


class DnsRecordTable(Base):
    """A name and address ipledger published (and the PTR, when ``reverse``)."""

    __tablename__ = "dns_records"

    name: Mapped[str] = mapped_column(String(255), primary_key=True)
    address: Mapped[str] = mapped_column(String(64), primary_key=True)
    zone: Mapped[str] = mapped_column(String(255))
    reverse: Mapped[bool] = mapped_column(Boolean)
    published_at: Mapped[float] = mapped_column(Float)


subnets = cast(Table, SubnetTable.__table__)
pools = cast(Table, PoolTable.__table__)
free_ranges = cast(Table, FreeRangeTable.__table__)
leases = cast(Table, LeaseTable.__table__)
reservations = cast(Table, ReservationTable.__table__)
parked = cast(Table, ParkedTable.__table__)
history = cast(Table, HistoryTable.__table__)
findings = cast(Table, FindingTable.__table__)
attachments = cast(Table, AttachmentTable.__table__)
served = cast(Table, ServedTable.__table__)
dns_outbox = cast(Table, DnsOutboxTable.__table__)
dns_records = cast(Table, DnsRecordTable.__table__)
