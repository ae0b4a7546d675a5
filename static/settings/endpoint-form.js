/*
 * Endpoint form: "Add a destination" appends a blank row (from the server-rendered template), and the total
 * of the primary destinations' weights is shown live, green at 100 and red otherwise. Without this script
 * the form still works: the blank row adds one destination per save, and the server checks the weights.
 * No inline script or handler is needed (CSP-friendly).
 */
(function () {
  "use strict";

  var form = document.getElementById("endpoint-form");
  if (!form) {
    return;
  }
  var rows = document.getElementById("destination-rows");
  var template = document.getElementById("destination-template");
  var addButton = document.getElementById("add-destination");
  var total = document.getElementById("weight-total");
  var sum = document.getElementById("weight-sum");
  var totalForms = form.querySelector("input[name='destinations-TOTAL_FORMS']");
  var maxForms = form.querySelector("input[name='destinations-MAX_NUM_FORMS']");

  function isRemoved(row) {
    var remove = row.querySelector("input[name$='-DELETE']");
    return remove && remove.checked;
  }

  function updateTotal() {
    var weight = 0;
    var primaries = 0;
    rows.querySelectorAll(".destination-row").forEach(function (row) {
      var role = row.querySelector("select[name$='-role']");
      var input = row.querySelector("input[name$='-weight']");
      var connection = row.querySelector("select[name$='-connection']");
      var isPrimary = role && role.value === "primary";
      if (input) {
        input.disabled = !isPrimary;
      }
      if (!isPrimary || isRemoved(row) || !connection || !connection.value) {
        return;
      }
      primaries += 1;
      weight += parseInt(input && input.value, 10) || 0;
    });
    sum.textContent = String(weight);
    var complete = primaries > 0 && weight === 100;
    total.classList.toggle("is-complete", complete);
    total.classList.toggle("is-incomplete", !complete);
  }

  function addRow() {
    var index = parseInt(totalForms.value, 10);
    if (maxForms && index >= parseInt(maxForms.value, 10)) {
      return;
    }
    var html = template.innerHTML.replace(/__prefix__/g, String(index));
    rows.insertAdjacentHTML("beforeend", html);
    totalForms.value = String(index + 1);
    var added = rows.lastElementChild;
    var focus = added && added.querySelector("select");
    if (focus) {
      focus.focus();
    }
    updateTotal();
  }

  addButton.hidden = false;
  addButton.addEventListener("click", addRow);
  rows.addEventListener("input", updateTotal);
  rows.addEventListener("change", updateTotal);
  updateTotal();
})();
