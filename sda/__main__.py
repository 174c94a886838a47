from sda.cli.main import main

# Guarded: the decoding pool's workers (sda.data.parallel, forkserver or spawn) import the main module again.
if __name__ == "__main__":
    raise SystemExit(main())
