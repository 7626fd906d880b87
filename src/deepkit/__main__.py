from deepkit.cli import main

main()
