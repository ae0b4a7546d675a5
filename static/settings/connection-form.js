/*
 * Connection form: when Provider or Authentication method changes, fetch the server-rendered fields of the
 * new method and swap them in, keeping whatever was typed (values are remembered by input name, so switching
 * back and forth loses nothing). Without this script the form still works: a submit with a changed provider
 * re-renders the right fields without saving. No inline script or handler is needed (CSP-friendly).
 *
 * Test asks the server about the credentials in the form without leaving the page: the verdict is swapped in
 * and what was typed stays in the inputs. Without this script Test submits the form to the same address and
 * the page comes back with the verdict (and secret inputs empty, as a page never carries a key back).
 */
(function () {
  "use strict";

  var form = document.getElementById("connection-form");
  if (!form) {
    return;
  }
  var container = document.getElementById("method-fields");
  var fieldsUrl = form.getAttribute("data-method-fields-url");
  var storedConnection = form.getAttribute("data-connection");
  var typed = new Map();
  var latestRequest = 0;

  function rememberTypedValues() {
    container.querySelectorAll("input, textarea").forEach(function (input) {
      if (input.type !== "hidden" && input.name) {
        typed.set(input.name, input.value);
      }
    });
  }

  function restoreTypedValues() {
    container.querySelectorAll("input, textarea").forEach(function (input) {
      if (input.type !== "hidden" && typed.has(input.name)) {
        input.value = typed.get(input.name);
      }
    });
  }

  function fragmentUrl(changed) {
    var params = new URLSearchParams();
    params.set("provider", form.elements.provider.value);
    // A new provider starts from its first (or the stored) method; a new method is asked for by name.
    if (changed.name === "auth_method") {
      params.set("auth_method", changed.value);
    }
    if (storedConnection) {
      params.set("connection", storedConnection);
    }
    return fieldsUrl + "?" + params.toString();
  }

  // A piece of a page rendered by the server (same-origin, marked as a script's request); rejects on an error status.
  function fetchFragment(url, options) {
    options.credentials = "same-origin";
    options.headers = { "X-Requested-With": "fetch" };
    return fetch(url, options).then(function (response) {
      if (!response.ok) {
        throw new Error("HTTP " + response.status);
      }
      return response.text();
    });
  }

  function swapFields(changed) {
    var requestNumber = ++latestRequest;
    rememberTypedValues();
    container.classList.add("is-loading");
    container.setAttribute("aria-busy", "true");
    fetchFragment(fragmentUrl(changed), {})
      .then(function (html) {
        if (requestNumber !== latestRequest) {
          return; // a later change superseded this one
        }
        container.innerHTML = html;
        restoreTypedValues();
        if (changed.name === "auth_method" && form.elements.auth_method) {
          form.elements.auth_method.focus();
        }
      })
      .catch(function () {
        // Keep the current fields: submitting re-renders the right ones on the server without saving.
      })
      .finally(function () {
        if (requestNumber === latestRequest) {
          container.classList.remove("is-loading");
          container.removeAttribute("aria-busy");
        }
      });
  }

  var verdict = document.getElementById("typed-test-result");

  function showNote(text) {
    var note = document.createElement("p");
    note.className = "muted";
    note.textContent = text;
    verdict.replaceChildren(note);
  }

  form.addEventListener("submit", function (event) {
    var button = event.submitter;
    if (!button || button.id !== "typed-test" || !verdict || !window.fetch || !window.FormData) {
      return; // Save, or a browser without these: the ordinary submit
    }
    event.preventDefault();
    button.disabled = true;
    verdict.setAttribute("aria-busy", "true");
    showNote("Asking the provider…");
    fetchFragment(button.getAttribute("formaction"), { method: "POST", body: new FormData(form) })
      .then(function (html) {
        verdict.innerHTML = html; // rendered by the server, escaped there
      })
      .catch(function () {
        showNote("The test could not be run: the server did not answer. Nothing was saved; try again.");
      })
      .finally(function () {
        button.disabled = false;
        verdict.removeAttribute("aria-busy");
      });
  });

  form.addEventListener("change", function (event) {
    var target = event.target;
    if (target.name === "provider" || (target.name === "auth_method" && target.tagName === "SELECT")) {
      swapFields(target);
    }
  });
})();
