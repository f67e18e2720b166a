"""Every SMTP reply the simulator gives, by name (``{address}`` is the recipient)."""

RCPT_OK = "250 2.1.5 OK"
QUEUED = "250 2.0.0 OK: queued as {queue_id}"
RELAY_DENIED = "550 5.7.1 <{address}>: Relaying denied"
USER_UNKNOWN = "550 5.1.1 <{address}>: Recipient address rejected: User unknown"
MAILBOX_FULL = "552 5.2.2 <{address}>: Mailbox full"
POLICY_BLOCK = "550 5.7.1 Message rejected due to local policy"
TRY_AGAIN = "451 4.7.1 <{address}>: Try again later"
# What a big provider says when it throttles the sending IP (Gmail's wording); the whole provider is affected
RATE_LIMITED = ("421 4.7.28 Our system has detected an unusual rate of unsolicited mail originating from "
                "your IP address. To protect our users from spam, mail sent from your IP address has been "
                "temporarily rate limited. Try again later.")
MESSAGE_TOO_BIG = "552 5.3.4 Message size exceeds fixed maximum message size"
DROPPED = "421 4.4.2 Connection dropped"  # never actually sent: "disconnect" aborts the transport first
