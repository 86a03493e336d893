// On phones the data tables turn into stacked cards: each cell shows its column's heading as a label.
// The labels are copied from the table's own headings, so every table gets them without template work;
// without scripts a table keeps its columns and scrolls sideways instead.
(function () {
  document.querySelectorAll("table.data").forEach(function (table) {
    var headings = Array.prototype.map.call(table.querySelectorAll("thead th"), function (th) {
      return th.textContent.trim();
    });
    if (!headings.length) {
      return;
    }
    table.querySelectorAll("tbody tr").forEach(function (row) {
      Array.prototype.forEach.call(row.children, function (cell, index) {
        if (headings[index]) {
          cell.setAttribute("data-label", headings[index]);
        }
      });
    });
    // display: block drops a table's meaning for some screen readers: say it outright.
    table.setAttribute("role", "table");
    table.querySelectorAll("tr").forEach(function (row) { row.setAttribute("role", "row"); });
    table.querySelectorAll("thead th").forEach(function (th) { th.setAttribute("role", "columnheader"); });
    table.querySelectorAll("tbody th").forEach(function (th) { th.setAttribute("role", "rowheader"); });
    table.querySelectorAll("tbody td").forEach(function (td) { td.setAttribute("role", "cell"); });
    table.classList.add("stacks");
  });
})();
