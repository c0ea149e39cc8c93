"""`python -m bench.serving`: the 28x28 PNG experiment (run.main); with `--photos` first, the
photograph experiment (photo_run.main); with `--profile` first, the service's CPU per image by
py-spy (profile.main)."""

import sys

if sys.argv[1:2] == ["--photos"]:
    from bench.serving.photo_run import main as photos_main

    photos_main(sys.argv[2:])
elif sys.argv[1:2] == ["--profile"]:
    from bench.serving.profile import main as profile_main

    profile_main(sys.argv[2:])
else:
    from bench.serving.run import main

    main()
