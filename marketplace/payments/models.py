"""Each x402 payment a paid download received: what makes a retry idempotent, and what became of
the settlement."""
from django.db import models
from django.db.models import Q

MONEY = dict(max_digits=78, decimal_places=0)  # token base units, NUMERIC(78,0)


class X402Payment(models.Model):
    """One EIP-3009 authorization presented to `GET /pay/<listing id>`, keyed as the token keys it,
    under the market it was presented to: (chain, market, token, payer, nonce). After a market is
    deployed afresh (listing ids start over) nothing of the old one is a retry at the new one.
    `payload_sha256` is the sha256 of the payment's canonical form (payments.settlement.canonical:
    the listing and the signed authorization, whose `to` is the market), so a retry of the
    same payment is recognised and served again until `valid_before`, and the same nonce with
    another payload is refused. A row refused before settling does not hold its key: the next
    payload with that nonce is checked afresh (nobody can block a payer's nonce by posting a
    forged payload first). A settled row whose chain was reset keeps its status and gets
    `error_code` "chain_reset" (payments.settlement.on_chain_reset): its order went with the chain,
    and it is never served again."""

    class Status(models.TextChoices):
        SETTLING = "settling", "Settling: the operator sender has it"
        SETTLED = "settled", "Settled: the order exists, the file is served"
        FAILED = "failed", "Failed: the settlement was not sent or reverted, nothing was paid"
        REFUSED = "refused", "Refused before anything was sent"
        TIMED_OUT = "timed_out", "Not settled within the request's limit (still with the sender)"

    CLAIMED = (Status.SETTLING, Status.SETTLED, Status.FAILED, Status.TIMED_OUT)  # hold the key

    chain_id = models.BigIntegerField()
    market = models.CharField(max_length=42, blank=True,
                              help_text="The DataMarket the payment was presented to (checksummed)")
    token = models.CharField(max_length=42, help_text="The listing's token (checksummed)")
    payer = models.CharField(max_length=42, help_text="The authorization's `from` (checksummed)")
    nonce = models.CharField(max_length=66, help_text="The authorization's nonce, 0x-hex, lower case")
    payload_sha256 = models.CharField(max_length=64)
    listing_id = models.DecimalField(**MONEY)
    version = models.ForeignKey("catalog.DatasetVersion", on_delete=models.PROTECT, related_name="+")
    amount = models.DecimalField(**MONEY)
    valid_before = models.DecimalField(**MONEY, help_text="Unix seconds: the authorization's validBefore")
    x402_version = models.PositiveSmallIntegerField()
    payment_identifier = models.CharField(max_length=128, blank=True,
                                          help_text="The payment-identifier extension's id, if the client sent one")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.SETTLING)
    error_code = models.CharField(max_length=40, blank=True)
    error = models.TextField(blank=True)
    action = models.ForeignKey("chain.OperatorAction", on_delete=models.PROTECT, null=True, blank=True,
                               related_name="+")
    tx_hash = models.CharField(max_length=66, blank=True)
    block_number = models.BigIntegerField(null=True, blank=True)
    order_id = models.DecimalField(**MONEY, null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    settled_at = models.DateTimeField(null=True, blank=True)
    ledger_pending = models.BooleanField(
        default=False, help_text="The agent key's ledger did not move with the row (it failed): "
        "payments.settlement.repair_ledgers moves it")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["chain_id", "market", "token", "payer", "nonce"],
                                    name="x402_payment_once_per_market"),
            models.UniqueConstraint(fields=["payer", "payment_identifier"], condition=~Q(payment_identifier=""),
                                    name="x402_payment_identifier_once"),
        ]
        indexes = [models.Index(fields=["payer", "-created_at"], name="x402_payment_by_payer"),
                   models.Index(fields=["ledger_pending"], condition=Q(ledger_pending=True),
                                name="x402_payment_ledger_pending")]

    def __str__(self):
        return f"x402 payment of listing {self.listing_id} by {self.payer} ({self.status})"
