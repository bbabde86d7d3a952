"""The overlay holds files for the reference's test tree, not tests of ours."""

collect_ignore = ["overlay"]
