from django.urls import path

from mmis.accounts import policy_views, views

app_name = "accounts"
urlpatterns = [
    path("", views.home, name="home"),
    path("session/open/", views.session_open, name="session_open"),
    path("accounts/<int:account_id>/pay/", views.pay, name="pay"),
    path("accounts/<int:account_id>/statement/", views.statement, name="statement"),
    path("accounts/<int:account_id>/requests/", views.approval_request, name="approval_request"),
    path("payments/<int:payment_id>/receipt.pdf", views.receipt, name="receipt"),
    path("payments/<int:payment_id>/reversal/", views.reversal_request, name="reversal_request"),
    path("approvals/", views.approvals, name="approvals"),
    path("approvals/<int:approval_id>/decide/", views.approval_decide, name="approval_decide"),
    path("arrears/", views.arrears, name="arrears"),
    path("arrears/dunning/", views.dunning, name="dunning"),
    path("arrears/export.xlsx", views.arrears_export, name="arrears_export"),
    path("bank/", views.bank, name="bank"),
    path("bank/export/", views.bank_export, name="bank_export"),
    path("bank/<int:batch_id>/", views.bank_batch, name="bank_batch"),
    path("bank/<int:batch_id>/file.csv", views.bank_file, name="bank_file"),
    path("agency/", views.agency_files, name="agency"),
    path("close/", views.close, name="close"),
    path("reports/ledger.xlsx", views.ledger_report, name="ledger_report"),
    path("prepaid/", views.prepaid, name="prepaid"),
    path("policy/", policy_views.policy, name="policy"),
]
