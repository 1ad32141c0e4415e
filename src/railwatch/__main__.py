from railwatch.cli.main import main

main()
