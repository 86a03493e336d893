"""The rule layer: every change to the mail tables and the portal's own goes through here.

One module per thing (domains, mailboxes, aliases, forwarding, roles, helpdesk,
CSV import). Each public function takes the acting :class:`portal.access.Actor`
and runs in one transaction: check, lock, check again under the lock (asking
:mod:`portal.access` the object-level questions), write, and record the audit
row. The pages, the command line and the CSV import call these and nothing
else to change data.
"""
