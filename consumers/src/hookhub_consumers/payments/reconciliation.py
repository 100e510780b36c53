"""Reconciliation: does the money a provider approved settle the order it names?

Pure functions of the order's amount and currency (from `order.created`) and the payment's (from
the provider's webhook, normalised to minor units): the payments consumer asks them before an
order is approved, and before a refund undoes one.
"""

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Verdict:
    """Whether a payment settles its order; by how much it overpays, or why it does not."""

    settles: bool
    overpaid: int = 0  # minor units beyond the order's amount
    reason: str | None = None


def reconcile(
    order_amount: int, order_currency: str, paid_amount: int | None, paid_currency: str | None
) -> Verdict:
    """A payment settles an order when it is in the order's currency and covers its amount.

    Money the provider did not describe (no amount or no currency) settles nothing: it cannot be
    checked, and goods are never moved for money nobody checked.
    """
    if paid_currency is None:
        return Verdict(False, reason="the provider did not say the payment's currency")
    if paid_currency.upper() != order_currency.upper():
        return Verdict(
            False, reason=f"paid in {paid_currency.upper()}, the order is in {order_currency}"
        )
    if paid_amount is None:
        return Verdict(False, reason="the provider did not say the amount paid")
    if paid_amount < order_amount:
        short = f"paid {paid_amount}, the order is {order_amount}"
        return Verdict(False, reason=f"{short} ({order_currency} minor units)")
    return Verdict(True, overpaid=paid_amount - order_amount)


def refund_is_partial(paid_amount: int | None, refunded_amount: int | None) -> bool:
    """Whether refunds adding up to `refunded_amount` leave part of the payment with the merchant
    (a discount, a returned item, the shipping). A refund of unknown size, or of a payment whose
    size is unknown, counts as full: the provider called it a refund."""
    return paid_amount is not None and refunded_amount is not None and refunded_amount < paid_amount
