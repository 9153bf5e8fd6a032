"""A deterministic stand-in for an SAP Cloud Integration tenant's OData API v1.

Run it with ``python -m simulator``. It speaks the same paths, envelope, paging,
filters, OAuth2 token endpoint and error envelope as a real tenant, so Flowwatch
reads it exactly like one. It imports nothing from Flowwatch or Django.
"""
