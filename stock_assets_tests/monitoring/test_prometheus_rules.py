"""The alert rules as promtool reads them: valid, and each one's behaviour pinned by a unit test
(deployment/prometheus/rules-test.yaml) with its threshold, its `for` and its labels."""

from __future__ import annotations

import shutil

from stock_assets_tests.monitoring.support import RULES_TEST, promtool, rule_groups, write_rules


def test_promtool_accepts_the_rules(tmp_path):
    rules = write_rules(tmp_path)
    result = promtool("check", "rules", rules, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    count = sum(len(group["rules"]) for group in rule_groups()["groups"])
    assert f"SUCCESS: {count} rules found" in result.stdout


def test_every_rule_has_a_unit_test():
    text = RULES_TEST.read_text()
    for group in rule_groups()["groups"]:
        for rule in group["rules"]:
            name = rule.get("alert") or rule["record"]
            assert name in text, f"{name} has no promtool unit test"


def test_promtool_unit_tests_of_the_rules_pass(tmp_path):
    write_rules(tmp_path)
    shutil.copy(RULES_TEST, tmp_path / "rules-test.yaml")
    result = promtool("test", "rules", "rules-test.yaml", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout
