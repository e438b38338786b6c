"""MMIS: electricity marketing management information system (电力营销管理信息系统)."""

__version__ = "0.1.0"
