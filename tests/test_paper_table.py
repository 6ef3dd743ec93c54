"""README's paper table: every linked file exists, every measured number comes from the row's
committed result files, every verdict is one of the four words, and every experiment's result
directory has a row."""
import os
import re

import pytest

from conftest import REPO

HEADER = "## Papers: claims and what we measured"
COLUMNS = ["paper", "claim", "config", "experiment", "measured here", "verdict"]
VERDICTS = ("**reproduced**", "**partly**", "**not reproduced**", "**not measured**")
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
# Numbers as the tables print them: 49,624 / 0.8894 / -1.42 (the sign is not checked).
NUMBER = re.compile(r"\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?")


def parse_table(readme: str) -> list[dict[str, str]]:
  """The rows of the table under HEADER, as {column: cell} (cells split on ' | ')."""
  section = readme.split(HEADER, 1)[1].split("\n## ", 1)[0]
  lines = [line for line in section.splitlines() if line.startswith("|")]
  header = [cell.strip() for cell in lines[0].strip("|").split(" | ")]
  assert header == COLUMNS, header
  rows = []
  for line in lines[2:]:
    cells = [cell.strip() for cell in line.strip().strip("|").split(" | ")]
    assert len(cells) == len(COLUMNS), line
    rows.append(dict(zip(COLUMNS, cells)))
  return rows


@pytest.fixture(scope="module")
def rows():
  with open(os.path.join(REPO, "README.md")) as f:
    return parse_table(f.read())


def test_the_parser_reads_cells_links_and_numbers():
  readme = "\n".join([
      "intro", HEADER, "", "| " + " | ".join(COLUMNS) + " |", "|---|---|---|---|---|---|",
      "| P | c | [x](configs/x.py) | [e](results/e/table.md) | acc 0.8894 ± 0.0131, 49,624 ex"
      " and 14680064, 29 | **partly**: because |", "", "## Next", "| not | a | row |"])
  (row,) = parse_table(readme)
  assert row["paper"] == "P" and row["verdict"] == "**partly**: because"
  assert LINK.findall(row["config"]) == ["configs/x.py"]
  assert NUMBER.findall(row["measured here"]) == ["0.8894", "0.0131", "49,624", "14680064", "29"]


def test_every_linked_file_exists(rows):
  links = [link for row in rows for cell in row.values() for link in LINK.findall(cell)]
  assert links
  missing = [link for link in links if not os.path.exists(os.path.join(REPO, link))]
  assert not missing, missing


def test_every_verdict_is_one_of_the_four(rows):
  bad = [row["paper"] for row in rows if not row["verdict"].startswith(VERDICTS)]
  assert not bad, bad


def test_every_measured_number_occurs_in_the_rows_result_files(rows):
  for row in rows:
    results = [link for link in LINK.findall(row["experiment"]) if link.startswith("results/")]
    numbers = NUMBER.findall(row["measured here"])
    if row["verdict"].startswith("**not measured**"):
      continue
    assert results and numbers, f"{row['paper']}: a measured row links a result file"
    text = ""
    for link in results:
      with open(os.path.join(REPO, link)) as f:
        text += f.read()
    absent = [n for n in numbers if n not in text]
    assert not absent, f"{row['paper']}: {absent} are not in {results}"


def test_every_result_directory_has_a_row(rows):
  linked = {link.split("/")[1] for row in rows for link in LINK.findall(row["experiment"])
            if link.startswith("results/")}
  directories = set(os.listdir(os.path.join(REPO, "results")))
  assert directories - linked == set(), directories - linked
