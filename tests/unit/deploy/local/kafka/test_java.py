"""The JVM command line of the broker."""

from __future__ import annotations

from pathlib import Path

from deploy.local.kafka.java import LOG4J2_CONFIG, java_command


def test_java_command_keeps_heap_small_and_loads_log4j_config(tmp_path: Path) -> None:
    cmd = java_command(
        java="java", libs=tmp_path, main_class="kafka.Kafka", args=["s.properties"], heap_mb=256
    )
    assert cmd[0] == "java"
    assert cmd[-2:] == ["kafka.Kafka", "s.properties"]
    assert "-Xmx256m" in cmd
    assert "-Xms128m" in cmd
    assert "-XX:+UseSerialGC" in cmd
    assert "-XX:TieredStopAtLevel=1" not in cmd
    assert f"-Dlog4j2.configurationFile={LOG4J2_CONFIG}" in cmd
    assert cmd[cmd.index("-cp") + 1] == f"{tmp_path}/*"
    assert LOG4J2_CONFIG.is_file()


def test_java_command_quick_jit(tmp_path: Path) -> None:
    cmd = java_command(
        java="java",
        libs=tmp_path,
        main_class="X",
        args=[],
        heap_mb=64,
        quick_jit=True,
        extra_jvm_args=["-Dx=1"],
    )
    assert "-XX:TieredStopAtLevel=1" in cmd
    assert "-Xms64m" in cmd
    assert cmd.index("-Dx=1") < cmd.index("-cp")
