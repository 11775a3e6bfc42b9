"""``python -m conveyor``: the CLI, with a fast path for the step entry point that exported tasks run."""

import sys

if sys.argv[1:3] == ["step", "exec"]:
    from conveyor.runtime.entry import main as step_exec

    step_exec(sys.argv[3:])
else:
    from conveyor.cli.main import main

    main()
