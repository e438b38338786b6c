from mmis.cli.django_setup import setup


def run(argv: list[str]) -> int:
    setup()
    from django.core.management import execute_from_command_line

    execute_from_command_line(["mmis manage", *argv])
    return 0
