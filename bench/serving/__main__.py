"""`python -m bench.serving`: the 28x28 PNG experiment (run.main), or with `--photos` first the
photograph experiment (photo_run.main)."""

import sys

if sys.argv[1:2] == ["--photos"]:
    from bench.serving.photo_run import main as photos_main

    photos_main(sys.argv[2:])
else:
    from bench.serving.run import main

    main()
