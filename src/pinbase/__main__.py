from pinbase.cli.main import main

main()
