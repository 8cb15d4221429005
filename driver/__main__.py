from driver.entrypoints.cli import main

main()
