"""DNSSEC: serving signed zones (RFC 4033-4035, RFC 5155, RFC 6840, RFC 9276).

``index_signatures`` (``denial``) indexes what a signed zone holds once, when it is
built: RRSIGs by owner and covered type, and the NSEC or NSEC3 chain sorted (canonical
order, or hash order) so that the record covering any name is found by bisection.
``secure`` (``serve``) turns a lookup's result into the DO=1 answer: RRSIGs after every
RRset that has them, and the NSEC/NSEC3 records that prove what the lookup says does
not exist. The compiled tables (``dnspol.answers``) use the same index and records.
"""

from dnspol.dnssec.denial import Chain, Signatures, index_signatures
from dnspol.dnssec.serve import secure

__all__ = ["Chain", "Signatures", "index_signatures", "secure"]
