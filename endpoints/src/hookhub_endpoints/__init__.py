"""Hookhub's outbound endpoints: who receives which events, signed with which secrets.

`model` (an endpoint and its checks), `registry` (the protocol, its audit, `open_registry`),
`registry_sqlite` and `registry_mongo` (the adapters), `config` (`HOOKHUB_ENDPOINTS_FILE`),
`stats` (an endpoint's health), `resend`, `cli` (`hookhub endpoints`). The delivery worker is the
notifications consumer (hookhub_consumers.notifications); the operator service reads and changes
endpoints through this package only.
"""
