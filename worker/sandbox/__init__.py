"""Each audit runs in its own forked child process, confined: see `child.run_in_child` and docs in README
("Security model"). The pool process keeps torch and the engine loaded, so a fork costs milliseconds."""
