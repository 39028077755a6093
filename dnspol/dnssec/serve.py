"""The DO=1 answer of a signed zone, from a lookup's result (RFC 4035 §3.1).

``secure`` adds, section by section, the RRSIGs of every RRset that has them (RFC 4035
§3.1.1; a wildcard's under the name it was synthesized for, RFC 4035 §3.1.3.3), the DS
of a secure delegation with its RRSIG or the proof that there is no DS (RFC 4035
§3.1.4), and the NSEC or NSEC3 records the lookup's ``Proof``s call for (RFC 4035
§3.1.3, RFC 5155 §7.2). A zone without ``signatures`` answers as it would without DO.
The synthesized CNAME of a DNAME has no RRSIG (RFC 6672 §5.3.1); its DNAME does.
"""

from __future__ import annotations

from dnspol.codes import RRType
from dnspol.dnssec.denial import Signatures
from dnspol.names import Name
from dnspol.zones.lookup import Denial, LookupResult, Proof
from dnspol.zones.model import Rec, Zone


def secure(zone: Zone, result: LookupResult, leave_out: Proof | None = None) -> LookupResult:
    """``result`` as a DO=1 answer. The records of the proof ``leave_out`` are left
    out: the compiled tables add those of a query name at run time."""
    signatures = zone.signatures
    if signatures is None:
        return result
    wild = dict(result.wildcards)
    answer = _signed(result.answer, signatures, wild)
    authority = _signed(result.authority, signatures, {})
    written: set[int] = set()
    # the last proof first: the first, about the query name itself, is the one the
    # compiled answers add at run time, after the others (``answers.compile``)
    for proof in reversed(result.proofs):
        if proof != leave_out:
            authority.extend(_denial(zone, signatures, proof, written))
    additional = _signed(result.additional, signatures, {})
    return LookupResult(
        result.outcome,
        answer,
        authority,
        additional,
        result.glue_required,
        result.proofs,
        result.wildcards,
    )


def depends_on_name(proof: Proof) -> bool:
    """Whether the records of ``proof`` depend on the query name below its encloser."""
    return proof.kind in (Denial.NXDOMAIN, Denial.WILDCARD, Denial.WILDCARD_NODATA)


def _signed(records: list[Rec], signatures: Signatures, wild: dict[Name, Name]) -> list[Rec]:
    """The records with each RRset's RRSIGs after it."""
    out: list[Rec] = []
    at = 0
    while at < len(records):
        first = records[at]
        end = at + 1
        while end < len(records) and records[end][:2] == first[:2]:
            end += 1
        out.extend(records[at:end])
        owner, rtype = first.owner, first.rtype
        sigs = signatures.of(wild.get(owner, owner), rtype)
        if sigs is not None:  # none for a DNAME's CNAME: no name below a DNAME has data
            out.extend(sigs.records(owner, first.ttl))  # e.g. a negative answer's SOA
        at = end
    return out


def _denial(zone: Zone, signatures: Signatures, proof: Proof, written: set[int]) -> list:
    """The records of one proof; ``written``: the chain's entries already in the answer."""
    if proof.kind is Denial.REFERRAL:
        ds = zone.nodes[proof.name].get(RRType.DS)
        if ds is not None:  # a secure delegation: its DS, signed (RFC 4035 §3.1.4)
            return _signed(ds.records(), signatures, {})
    chain = signatures.chain
    if chain is None:
        return []
    out: list = []
    for index in chain.entries_for(proof):
        if index not in written:
            written.add(index)
            out.extend(chain.entries[index].records)
    return out


def written_entries(zone: Zone, proofs: tuple[Proof, ...], leave_out: Proof) -> frozenset[int]:
    """The chain entries ``secure`` writes for ``proofs`` but ``leave_out``."""
    chain = zone.signatures.chain
    written: set[int] = set()
    for proof in proofs:
        if proof == leave_out or chain is None:
            continue
        if proof.kind is Denial.REFERRAL and RRType.DS in zone.nodes[proof.name]:
            continue  # the DS is written, not a denial
        written.update(chain.entries_for(proof))
    return frozenset(written)
