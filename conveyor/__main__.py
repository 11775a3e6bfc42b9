"""``python -m conveyor``: the CLI, with a fast path for the step entry point that exported tasks run.

In the pipeline image (``CONVEYOR_IMAGE=1``) a bare ``serve`` argument, which is how SageMaker
starts a serving container, serves the platform's model as ``conveyor serve-container`` does.
"""

import os
import sys

if sys.argv[1:] == ["serve"] and os.environ.get("CONVEYOR_IMAGE") == "1":
    sys.argv[1:] = ["serve-container", "serve"]
if sys.argv[1:3] == ["step", "exec"]:
    from conveyor.runtime.entry import main as step_exec

    step_exec(sys.argv[3:])
else:
    from conveyor.cli.main import main

    main()
