// The credits page: preset amounts fill the amount field, whose htmx attributes then update "what it
// buys". The payment page: Stripe.js saves the card (confirmCardSetup), the server charges it, and
// Stripe.js completes 3-D Secure when the bank asks (confirmCardPayment). The server re-checks every
// outcome.
(() => {
  "use strict";

  const presets = document.getElementById("amount-presets");
  const amount = document.getElementById("amount");
  if (presets && amount) {
    const buttons = [...presets.querySelectorAll("button[data-amount]")];
    const dollars = (text) => Number.parseFloat(String(text).trim().replace(/^\$/, ""));
    const markChosen = () => {
      const typed = dollars(amount.value);
      buttons.forEach((button) => {
        button.setAttribute("aria-pressed", String(dollars(button.dataset.amount) === typed));
      });
    };
    presets.addEventListener("click", (event) => {
      const button = event.target.closest("button[data-amount]");
      if (!button) return;
      amount.value = button.dataset.amount;
      // As if typed: htmx's `input changed` trigger asks for what the amount buys.
      amount.dispatchEvent(new Event("input", { bubbles: true }));
    });
    amount.addEventListener("input", markChosen);
    markChosen();
    presets.hidden = false;
  }

  const paymentForm = document.getElementById("payment-form");
  if (paymentForm) {
    const stripe = Stripe(paymentForm.dataset.publishableKey);
    const card = stripe.elements().create("card");
    card.mount("#card-element");
    const errors = document.getElementById("card-errors");
    const button = document.getElementById("pay-button");
    const paymentMethod = document.getElementById("payment-method");

    paymentForm.addEventListener("submit", async (event) => {
      if (paymentMethod.value) return; // the card is saved: the form posts it
      event.preventDefault();
      button.disabled = true;
      button.setAttribute("aria-busy", "true");
      errors.textContent = "";
      const result = await stripe.confirmCardSetup(paymentForm.dataset.clientSecret, {
        payment_method: { card },
      });
      if (result.error) {
        errors.textContent = result.error.message || "The card could not be saved.";
        button.disabled = false;
        button.removeAttribute("aria-busy");
        return;
      }
      const method = result.setupIntent.payment_method;
      paymentMethod.value = typeof method === "string" ? method : method.id;
      paymentForm.submit();
    });
  }

  const authentication = document.getElementById("authentication");
  if (authentication) {
    const stripe = Stripe(authentication.dataset.publishableKey);
    const checkForm = document.getElementById("check-form");
    // Whatever the bank answered, the server asks Stripe where the payment stands.
    stripe
      .confirmCardPayment(authentication.dataset.intentClientSecret)
      .finally(() => checkForm.submit());
  }
})();
