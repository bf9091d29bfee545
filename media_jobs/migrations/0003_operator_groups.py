"""The two staff groups of the admin portal.

- "media operators": view the jobs, assets, timeline and callback log, and operate
  (retry, mark failed, reprocess, replay: ``media_jobs.operate_mediaprocessingjob``);
- "media viewers": view only.

Django creates permissions in post_migrate, i.e. after this migration on a fresh database, so
the Permission rows (and their content types) are created here with get_or_create; the later
post_migrate pass finds them and adds nothing.

It also adds the one index the admin needs that Django's model state cannot express: a
100-character prefix index on ``last_error`` (MySQL/MariaDB only, and only when the portal
manages the tables), so the "error code" filter (``last_error LIKE 'code=X |%'``) is an index
range instead of a scan of a million rows.
"""

from django.conf import settings
from django.db import migrations

OPERATORS = "media operators"
VIEWERS = "media viewers"
MODELS = {
    "mediaprocessingjob": "media processing job",
    "mediaasset": "media asset",
    "mediajobevent": "media job event",
    "callbackdelivery": "callback delivery",
}
OPERATE = ("operate_mediaprocessingjob", "Can retry, mark failed and reprocess")


def _permission(apps, model, codename, name):
    ContentType = apps.get_model("contenttypes", "ContentType")
    Permission = apps.get_model("auth", "Permission")
    content_type, _ = ContentType.objects.get_or_create(app_label="media_jobs", model=model)
    permission, _ = Permission.objects.get_or_create(
        content_type=content_type, codename=codename, defaults={"name": name}
    )
    return permission


def create_groups(apps, schema_editor):
    Group = apps.get_model("auth", "Group")
    view = [
        _permission(apps, model, f"view_{model}", f"Can view {verbose}")
        for model, verbose in MODELS.items()
    ]
    operate = _permission(apps, "mediaprocessingjob", *OPERATE)
    viewers, _ = Group.objects.get_or_create(name=VIEWERS)
    viewers.permissions.add(*view)
    operators, _ = Group.objects.get_or_create(name=OPERATORS)
    operators.permissions.add(*view, operate)


def remove_groups(apps, schema_editor):
    apps.get_model("auth", "Group").objects.filter(name__in=[OPERATORS, VIEWERS]).delete()


ERROR_HEAD_INDEX = "idx_mpj_error_head"


def _index_applies(schema_editor):
    return schema_editor.connection.vendor == "mysql" and settings.MEDIA_JOBS_MANAGE_TABLES


def add_error_head_index(apps, schema_editor):
    if _index_applies(schema_editor):
        schema_editor.execute(
            f"CREATE INDEX {ERROR_HEAD_INDEX} ON media_processing_jobs (last_error(100))"
        )


def drop_error_head_index(apps, schema_editor):
    if _index_applies(schema_editor):
        schema_editor.execute(f"DROP INDEX {ERROR_HEAD_INDEX} ON media_processing_jobs")


class Migration(migrations.Migration):
    dependencies = [
        ("media_jobs", "0002_portal_tables"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [
        migrations.RunPython(create_groups, remove_groups),
        migrations.RunPython(add_error_head_index, drop_error_head_index, atomic=False),
    ]
